// TEMPORARY: stands in for the codecs helper's Qed.Formats.Qcow2.Compression (same API) until it is merged; delete then.
using System.IO.Compression;

namespace Qed.Formats.Qcow2.Compression;

internal enum Qcow2CompressionType : byte { Zlib = 0, Zstd = 1 }

internal static class Qcow2Compression
{
    public static void Decompress(Qcow2CompressionType type, ReadOnlySpan<byte> input, Span<byte> cluster)
    {
        if (type != Qcow2CompressionType.Zlib)
        {
            throw new QedUnsupportedException("zstd stub");
        }
        using var stream = new DeflateStream(new MemoryStream(input.ToArray()), CompressionMode.Decompress);
        int done = 0;
        while (done < cluster.Length)
        {
            int n = stream.Read(cluster[done..]);
            if (n == 0)
            {
                throw new QedCorruptionException("short compressed cluster");
            }
            done += n;
        }
    }

    public static int Compress(Qcow2CompressionType type, ReadOnlySpan<byte> cluster, Span<byte> destination)
    {
        if (type != Qcow2CompressionType.Zlib)
        {
            return -1;
        }
        var output = new MemoryStream();
        using (var stream = new DeflateStream(output, CompressionLevel.Fastest, leaveOpen: true))
        {
            stream.Write(cluster);
        }
        if (output.Length >= cluster.Length)
        {
            return -1;
        }
        output.GetBuffer().AsSpan(0, (int)output.Length).CopyTo(destination);
        return (int)output.Length;
    }
}

internal readonly record struct Qcow2CompressedDescriptor(ulong HostOffset, int Length)
{
    public static Qcow2CompressedDescriptor Decode(ulong l2Entry, int clusterBits)
    {
        int split = 70 - clusterBits;
        ulong offset = l2Entry & ((1UL << split) - 1);
        ulong sectors = ((l2Entry & ((1UL << 62) - 1)) >> split) + 1;
        return new(offset, (int)(sectors * 512 - (offset & 511)));
    }

    public static ulong Encode(ulong hostOffset, int compressedLength, int clusterBits)
    {
        int split = 70 - clusterBits;
        ulong last = (hostOffset + (ulong)compressedLength - 1) / 512;
        ulong extra = last - hostOffset / 512;
        return (1UL << 62) | (extra << split) | hostOffset;
    }

    public long FirstCluster(int clusterBits) => (long)(HostOffset >> clusterBits);

    public long LastCluster(int clusterBits) => (long)((HostOffset + (ulong)Length - 1) >> clusterBits);
}
