using Qed.IO;

namespace Qed.Formats;

/// <summary>Recognises an image format from the first bytes of a file, as qemu-img's probing does for the formats we meet.</summary>
internal static class FormatProbe
{
    /// <summary>Bytes the probe looks at.</summary>
    public const int ProbeLength = 512;

    /// <summary>The first of <paramref name="formats"/> that recognises <paramref name="head"/>, else <paramref name="fallback"/>.</summary>
    public static ImageFormat Probe(ReadOnlySpan<byte> head, IReadOnlyList<ImageFormat> formats, ImageFormat fallback)
    {
        foreach (var format in formats)
        {
            if (format.Recognizes(head))
            {
                return format;
            }
        }
        return fallback;
    }

    /// <summary>Reads the first <see cref="ProbeLength"/> bytes of <paramref name="file"/> (zero-padded) and probes them.</summary>
    public static async ValueTask<ImageFormat> ProbeAsync(FileAccessor file, IReadOnlyList<ImageFormat> formats, ImageFormat fallback, bool useAsync, CancellationToken cancellationToken)
    {
        byte[] head = new byte[ProbeLength];
        await file.ReadZeroPaddedAsync(head, 0, useAsync, cancellationToken).ConfigureAwait(false);
        return Probe(head, formats, fallback);
    }
}
