using System.Globalization;
using Qed.Formats.Qcow2.Writer;
using Qed.IO;

namespace Qed.Formats.Qcow2;

/// <summary>Creating qcow2 images: empty ones (<c>create</c>) and the write-once target of <c>convert -O qcow2</c>.</summary>
internal sealed partial class Qcow2Format
{
    private static readonly ImageCreateOption[] s_createOptions =
    [
        // In the order qemu-img announces them ("Formatting 'x', fmt=qcow2 cluster_size=65536 extended_l2=off ...").
        new(Qcow2CreateSettings.ClusterSizeName, ImageCreateOptionKind.Size, "qcow2 cluster size",
            Qcow2CreateSettings.DefaultClusterSize.ToString(CultureInfo.InvariantCulture)),
        new(Qcow2CreateSettings.ExtendedL2Name, ImageCreateOptionKind.Flag, "Extended L2 tables", "off"),
        new(Qcow2CreateSettings.PreallocationName, ImageCreateOptionKind.Text, "Preallocation mode (allowed values: off)"),
        new(Qcow2CreateSettings.CompressionTypeName, ImageCreateOptionKind.Text, "Compression method used for image cluster compression", "zlib"),
        new(ImageCreateOption.SizeName, ImageCreateOptionKind.Size, "Virtual disk size"),
        new(Qcow2CreateSettings.CompatName, ImageCreateOptionKind.Text, "Compatibility level (v2 [0.10] or v3 [1.1])"),
        new(ImageCreateOption.BackingFileName, ImageCreateOptionKind.Text, "File name of a base image"),
        new(ImageCreateOption.BackingFormatName, ImageCreateOptionKind.Text, "Image format of the base image"),
        new(Qcow2CreateSettings.LazyRefcountsName, ImageCreateOptionKind.Flag, "Postpone refcount updates", "off"),
        new(Qcow2CreateSettings.RefcountBitsName, ImageCreateOptionKind.Number, "Width of a reference count entry in bits",
            Qcow2CreateSettings.DefaultRefcountBits.ToString(CultureInfo.InvariantCulture)),
    ];

    /// <inheritdoc />
    public override bool CanCreate => true;

    /// <inheritdoc />
    public override bool SupportsBackingFile => true;

    /// <inheritdoc />
    // The writer allocates at the end of its file, which a fixed-size device cannot do.
    public override bool GrowsFile => true;

    /// <inheritdoc />
    public override IReadOnlyList<ImageCreateOption> CreateOptions { get; } = Array.AsReadOnly(s_createOptions);

    /// <inheritdoc />
    public override void Validate(ImageCreateOptions options) => Qcow2CreateSettings.From(options);

    /// <summary>
    /// Creates <paramref name="path"/> as a new qcow2 image to be written once (<c>convert</c>'s target): the returned
    /// device takes writes and writes the image's metadata at each flush and at close. It owns <paramref name="backing"/>,
    /// the open backing file named by <paramref name="options"/> (or null).
    /// </summary>
    /// <param name="path">The file to create (an existing one is locked, then emptied).</param>
    /// <param name="options">The creation options, checked as <see cref="Validate"/> checks them.</param>
    /// <param name="backing">The opened backing file, or null.</param>
    /// <param name="compress">Store clusters compressed (<c>convert -c</c>) where that makes them smaller.</param>
    internal static Qcow2TargetImage CreateTarget(string path, ImageCreateOptions options, BlockDevice? backing, bool compress) =>
        Qcow2TargetImage.Create(path, Qcow2CreateSettings.From(options), backing, compress);

    private protected override async ValueTask CreateCoreAsync(string path, ImageCreateOptions options, bool useAsync, CancellationToken cancellationToken)
    {
        var settings = Qcow2CreateSettings.From(options);
        // An empty image is a target nothing was written to: its close writes the header, tables and refcounts.
        var image = Qcow2TargetImage.Create(path, settings, backing: null, compress: false);
        if (useAsync)
        {
            await image.DisposeAsync().ConfigureAwait(false);
        }
        else
        {
            image.Dispose();
        }
    }
}
