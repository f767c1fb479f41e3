using System.Globalization;
using Qed.Check;
using Qed.Format;
using Qed.Image;
using Qed.IO;
using Qed.Tables;

namespace Qed.Formats.Qed;

/// <summary>QEMU Enhanced Disk: the format this library reads, writes, creates and checks (<see cref="QedImage"/>).</summary>
internal sealed class QedFormat : ImageFormat
{
    /// <summary>The cluster size option.</summary>
    public const string ClusterSizeName = "cluster_size";

    /// <summary>The table size option.</summary>
    public const string TableSizeName = "table_size";

    private static readonly ImageCreateOption[] s_createOptions =
    [
        new(ImageCreateOption.SizeName, ImageCreateOptionKind.Size, "Virtual disk size"),
        new(ImageCreateOption.BackingFileName, ImageCreateOptionKind.Text, "File name of a base image"),
        new(ImageCreateOption.BackingFormatName, ImageCreateOptionKind.Text, "Image format of the base image"),
        new(ClusterSizeName, ImageCreateOptionKind.Size, "Cluster size (in bytes)", QedGeometry.DefaultClusterSize.ToString(CultureInfo.InvariantCulture)),
        new(TableSizeName, ImageCreateOptionKind.Size, "L1/L2 table size (in clusters)"),
    ];

    /// <inheritdoc />
    public override string Name => "qed";

    /// <inheritdoc />
    internal override string Title => "QED";

    /// <inheritdoc />
    internal override bool Recognizes(ReadOnlySpan<byte> head) => QedHeader.HasMagic(head);

    /// <inheritdoc />
    public override bool CanOpen => true;

    /// <inheritdoc />
    public override bool CanWrite => true;

    /// <inheritdoc />
    public override bool CanCreate => true;

    /// <inheritdoc />
    public override bool SupportsBackingFile => true;

    /// <inheritdoc />
    public override bool CanCheck => true;

    /// <inheritdoc />
    // A read-only view: the array itself could be cast back and changed by a caller.
    public override IReadOnlyList<ImageCreateOption> CreateOptions { get; } = Array.AsReadOnly(s_createOptions);

    /// <inheritdoc />
    public override ImageDescription Describe(BlockDevice device)
    {
        var image = Image(device);
        return new ImageDescription
        {
            Format = Name,
            VirtualSize = image.Size,
            ClusterSize = image.Geometry.ClusterSize,
            NeedsCheck = image.Header.NeedsCheck,
            BackingFileName = image.BackingFileName,
            BackingFilePath = image.BackingFilePath,
            BackingFormat = image.BackingFormat,
        };
    }

    /// <inheritdoc />
    internal override long? GetL2TableSpan(BlockDevice device) => Image(device).Geometry.L2Span;

    /// <inheritdoc />
    public override L2CacheStatistics? GetCacheStatistics(BlockDevice device) => Image(device).CacheStatistics;

    /// <summary>Warns of creation options that make an image QEMU cannot open (qed can).</summary>
    public override IReadOnlyList<string> CompatibilityWarnings(ImageCreateOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.Settings.TryGetValue(TableSizeName, out long tableSize) && tableSize == 1
            ? ["QEMU 7.2 cannot open images with table_size=1 (it rejects every table offset); qed can"]
            : [];
    }

    internal override void CheckBackingFileChange(BlockDevice device, string? backingFile) => Image(device).CheckBackingChange(backingFile);

    private protected override ValueTask ChangeBackingFileCoreAsync(BlockDevice device, string? backingFile, string? backingFormat, bool useAsync, CancellationToken cancellationToken) =>
        Image(device).ChangeBackingFileAsync(backingFile, backingFormat, useAsync, cancellationToken);

    internal override bool RefusesSharedWriters => true;

    /// <inheritdoc />
    public override bool GrowsFile => true;

    internal override async ValueTask<ImageOpening> BeginOpenAsync(FileAccessor file, ImageOpenOptions options, bool useAsync, CancellationToken cancellationToken) =>
        new Opening(await QedImage.BeginOpenAsync(file, options, useAsync, cancellationToken).ConfigureAwait(false), options);

    /// <inheritdoc />
    public override void Validate(ImageCreateOptions options) => QedCreator.Build(ToQedOptions(options));

    private protected override ValueTask CreateCoreAsync(string path, ImageCreateOptions options, bool useAsync, CancellationToken cancellationToken) =>
        QedCreator.CreateAsync(path, ToQedOptions(options), useAsync, cancellationToken);

    /// <summary>The engine's options; unknown keys and geometry values QEMU refuses (also beyond the <see cref="int"/> range) are refused first.</summary>
    private static QedCreateOptions ToQedOptions(ImageCreateOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        foreach (string key in options.Settings.Keys)
        {
            if (key is not (ClusterSizeName or TableSizeName))
            {
                throw new QedUnsupportedException($"Invalid parameter '{key}'");
            }
        }
        long clusterSize = options.Settings.GetValueOrDefault(ClusterSizeName, QedGeometry.DefaultClusterSize);
        long tableSize = options.Settings.GetValueOrDefault(TableSizeName, QedGeometry.DefaultTableSize);
        QedCreator.ValidateGeometry(clusterSize, tableSize);
        return new QedCreateOptions
        {
            Size = options.Size,
            ClusterSize = (int)clusterSize,
            TableSize = (int)tableSize,
            BackingFile = options.BackingFile,
            BackingFormat = options.BackingFile is null ? null : options.BackingFormat,
        };
    }

    private protected override async ValueTask<CheckResult> CheckCoreAsync(BlockDevice device, RepairMode mode, bool useAsync, CancellationToken cancellationToken)
    {
        var image = Image(device);
        return useAsync ? await image.CheckAsync(mode, cancellationToken).ConfigureAwait(false) : image.Check(mode);
    }

    private QedImage Image(BlockDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return device as QedImage ?? throw new ArgumentException($"'{device.FileName}' is a {device.FormatName} image, not {Title}.", nameof(device));
    }

    private sealed class Opening(QedImage image, ImageOpenOptions options) : ImageOpening
    {
        public override BlockDevice Device => image;

        public override string? BackingPath => image.BackingFilePath;

        // QED records only "raw" (the no-probe bit); any other backing file is probed.
        public override string? BackingFormat => image.BackingFormat;

        public override void AttachBacking(BlockDevice backing) => image.AttachBacking(backing);

        public override ValueTask CompleteAsync(bool useAsync, CancellationToken cancellationToken) =>
            image.CompleteOpenAsync(options, useAsync, cancellationToken);
    }
}
