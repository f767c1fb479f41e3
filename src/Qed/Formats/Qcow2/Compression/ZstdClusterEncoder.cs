using ZstdSharp;

namespace Qed.Formats.Qcow2.Compression;

/// <summary>
/// Compresses a cluster into one zstd frame that declares its content size, at zstd's default level 3 and without
/// a checksum, as QEMU does. One compressor per thread (a compressor is not thread-safe; its context is reused).
/// </summary>
internal static class ZstdClusterEncoder
{
    [ThreadStatic] private static Compressor? t_compressor;

    /// <summary>Returns the frame's length, or -1 when it does not fit in <paramref name="destination"/>.</summary>
    public static int Compress(ReadOnlySpan<byte> cluster, Span<byte> destination)
    {
        var compressor = t_compressor ??= new Compressor(Compressor.DefaultCompressionLevel);
        return compressor.TryWrap(cluster, destination, out int written) ? written : -1;
    }
}
