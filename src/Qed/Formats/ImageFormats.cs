using System.Text;
using Qed.Formats.Foreign;
using Qed.Formats.Qcow2;
using Qed.Formats.Qed;
using Qed.Formats.Raw;
using Qed.IO;

namespace Qed.Formats;

/// <summary>The registry of image formats: every format the library reads, creates or at least recognises, registered explicitly (no reflection, so Native AOT keeps them).</summary>
/// <remarks>
/// A new format is a folder under <c>src/Qed/Formats</c> with its <see cref="ImageFormat"/> and one line in
/// <see cref="s_registered"/>. The order of that list is the probe order; raw comes last because it has no signature
/// and is what a file is when nothing else recognises it.
/// </remarks>
public static class ImageFormats
{
    /// <summary>QEMU Enhanced Disk.</summary>
    public static ImageFormat Qed { get; } = new QedFormat();

    /// <summary>qcow2, QEMU's copy-on-write format: read, written by convert, checked.</summary>
    public static ImageFormat Qcow2 { get; } = new Qcow2Format();

    /// <summary>A raw disk: the file's bytes are the disk.</summary>
    public static ImageFormat Raw { get; } = new RawFormat();

    private static readonly ImageFormat[] s_registered =
    [
        Qed,
        Qcow2,
        ForeignFormat.Qcow,
        ForeignFormat.Vmdk,
        ForeignFormat.Vdi,
        ForeignFormat.Vhdx,
        ForeignFormat.Vpc,
        Raw,
    ];

    /// <summary>Every registered format, in probe order.</summary>
    public static IReadOnlyList<ImageFormat> All { get; } = Array.AsReadOnly(s_registered);

    /// <summary>Bytes of a file's start the probe looks at.</summary>
    public const int ProbeLength = FormatProbe.ProbeLength;

    /// <summary>The format named <paramref name="name"/> as qemu-img spells it (case-sensitive, as qemu-img's <c>-f</c>), or null when none is registered.</summary>
    public static ImageFormat? Find(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        foreach (var format in s_registered)
        {
            if (string.Equals(format.Name, name, StringComparison.Ordinal))
            {
                return format;
            }
        }
        return null;
    }

    /// <summary>The format of <paramref name="device"/>, a device the library opened.</summary>
    /// <exception cref="ArgumentException">The device's format is not registered (a device made outside the registry).</exception>
    public static ImageFormat Of(BlockDevice device)
    {
        ArgumentNullException.ThrowIfNull(device);
        return Find(device.FormatName) ?? throw new ArgumentException($"No registered image format is called '{device.FormatName}'.", nameof(device));
    }

    /// <summary>The format <paramref name="head"/> (a file's first bytes, zero-padded to <see cref="ProbeLength"/>) shows: the first registered format that recognises it, else raw.</summary>
    public static ImageFormat Probe(ReadOnlySpan<byte> head) => FormatProbe.Probe(head, s_registered, Raw);

    /// <summary>The format of the file at <paramref name="path"/> as the probe sees it (it may be one the library only recognises: see <see cref="ImageFormat.CanOpen"/>).</summary>
    /// <exception cref="QedException">The file cannot be read.</exception>
    public static ImageFormat Probe(string path)
    {
        using var file = HandleFileAccessor.Open(path, readOnly: true);
        return FormatProbe.ProbeAsync(file, s_registered, Raw, useAsync: false, CancellationToken.None).GetAwaiter().GetResult();
    }

    /// <summary>The probed format of <paramref name="file"/>, refused when the library cannot read it.</summary>
    internal static async ValueTask<ImageFormat> ProbeForOpenAsync(FileAccessor file, bool useAsync, CancellationToken cancellationToken)
    {
        var probed = await FormatProbe.ProbeAsync(file, s_registered, Raw, useAsync, cancellationToken).ConfigureAwait(false);
        return probed.CanOpen ? probed : throw NotReadable(file.Path, probed);
    }

    /// <summary>The refusal of a format name that is not registered or does not open.</summary>
    internal static QedUnsupportedException UnknownDriver(string name) => new($"Unknown driver '{name}': this library reads {ReadableList()} images");

    /// <summary>The refusal of a file whose format the library recognises but does not read.</summary>
    internal static QedUnsupportedException NotReadable(string path, ImageFormat format) =>
        new($"'{path}' is a {format.Name} image, which this library does not read (it reads {ReadableList()} images)");

    /// <summary><c>QED, qcow2 and raw</c>: the formats that open, for refusals.</summary>
    internal static string ReadableList()
    {
        var readable = s_registered.Where(f => f.CanOpen).Select(f => f.Title).ToArray();
        var text = new StringBuilder();
        for (int i = 0; i < readable.Length; i++)
        {
            text.Append(i == 0 ? "" : i == readable.Length - 1 ? " and " : ", ").Append(readable[i]);
        }
        return text.ToString();
    }
}
