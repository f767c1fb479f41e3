using System.IO.Compression;

namespace Qed.Formats.Qcow2.Compression;

/// <summary>
/// Inflates a raw-DEFLATE cluster with .NET's DeflateStream (no native library needed to read). Like QEMU, it stops
/// as soon as the cluster is full and ignores the rest of the span, which belongs to the next compressed cluster.
/// DeflateStream's 32 KiB window accepts every stream QEMU's 4 KiB inflater accepts (and a few more).
/// </summary>
internal static unsafe class ZlibClusterDecoder
{
    public static void Decompress(ReadOnlySpan<byte> input, Span<byte> cluster)
    {
        int filled = 0;
        fixed (byte* start = input)
        {
            using var source = new UnmanagedMemoryStream(start, input.Length);
            using var inflater = new DeflateStream(source, CompressionMode.Decompress);
            try
            {
                while (filled < cluster.Length)
                {
                    int read = inflater.Read(cluster[filled..]);
                    if (read == 0)
                    {
                        break;
                    }
                    filled += read;
                }
            }
            catch (InvalidDataException exception)
            {
                throw Qcow2Compression.Corrupt(Qcow2CompressionType.Zlib, $"invalid deflate data after {filled} bytes ({exception.Message.TrimEnd('.')})");
            }
        }
        if (filled < cluster.Length)
        {
            throw Qcow2Compression.Corrupt(Qcow2CompressionType.Zlib, $"the {input.Length}-byte span inflates to {filled} of {cluster.Length} bytes");
        }
    }
}
