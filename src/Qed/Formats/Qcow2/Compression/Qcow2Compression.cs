namespace Qed.Formats.Qcow2.Compression;

/// <summary>
/// Compressed qcow2 clusters (QCOW2.md §5.5): one cluster in, one stream out, and back. zlib streams are raw DEFLATE
/// with a 4 KiB window (written by the system zlib exactly as QEMU writes them, read by DeflateStream); zstd streams
/// are frames written and read by ZstdSharp. Every method is thread-safe (per-thread codec state).
/// </summary>
internal static class Qcow2Compression
{
    /// <summary>
    /// Inflates one compressed cluster from the bytes of its span (trailing bytes ignored) into exactly
    /// <paramref name="cluster"/>.Length bytes; throws <see cref="QedCorruptionException"/> (one line naming the problem)
    /// when it cannot.
    /// </summary>
    public static void Decompress(Qcow2CompressionType type, ReadOnlySpan<byte> input, Span<byte> cluster)
    {
        if (input.IsEmpty)
        {
            throw Corrupt(type, "the span is empty");
        }
        switch (type)
        {
            case Qcow2CompressionType.Zlib:
                ZlibClusterDecoder.Decompress(input, cluster);
                break;
            case Qcow2CompressionType.Zstd:
                ZstdClusterDecoder.ForCurrentThread.Decompress(input, cluster);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(type), type, "unknown qcow2 compression type");
        }
    }

    /// <summary>
    /// Compresses one cluster into <paramref name="destination"/> (at least <paramref name="cluster"/>.Length bytes);
    /// returns the length, or -1 when the result would not be smaller than the cluster (store it uncompressed).
    /// Thread-safe. zlib needs the system zlib (<see cref="QedUnsupportedException"/> when it cannot be loaded).
    /// </summary>
    public static int Compress(Qcow2CompressionType type, ReadOnlySpan<byte> cluster, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(destination.Length, cluster.Length, nameof(destination));
        // QEMU offers the encoder one byte less than a cluster: a stream must save at least one byte to be kept.
        int capacity = cluster.Length - 1;
        return type switch
        {
            Qcow2CompressionType.Zlib => ZlibClusterEncoder.ForCurrentThread.Compress(cluster, destination, capacity),
            Qcow2CompressionType.Zstd => ZstdClusterEncoder.Compress(cluster, destination[..capacity]),
            _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown qcow2 compression type"),
        };
    }

    internal static QedCorruptionException Corrupt(Qcow2CompressionType type, string problem) =>
        new($"compressed cluster ({(type == Qcow2CompressionType.Zlib ? "zlib" : "zstd")}): {problem}");
}
