using System.Buffers.Binary;

namespace Qed.Tests.Fuzz;

/// <summary>The header fields the qemu-img relation depends on, read straight from the bytes (independently of the engine's parser).</summary>
internal readonly record struct HeaderFacts(bool HasMagic, uint ClusterSize, uint TableSize, uint HeaderSize, ulong ImageSize, long FileLength)
{
    /// <summary>Reads the 64-byte header at the start of <paramref name="file"/> (zero-padded when shorter, as QEMU reads it).</summary>
    public static HeaderFacts Read(ReadOnlySpan<byte> file)
    {
        Span<byte> header = stackalloc byte[64];
        header.Clear();
        file[..Math.Min(64, file.Length)].CopyTo(header);
        return new HeaderFacts(
            BinaryPrimitives.ReadUInt32LittleEndian(header) == 0x00444551,
            BinaryPrimitives.ReadUInt32LittleEndian(header[4..]),
            BinaryPrimitives.ReadUInt32LittleEndian(header[8..]),
            BinaryPrimitives.ReadUInt32LittleEndian(header[12..]),
            BinaryPrimitives.ReadUInt64LittleEndian(header[48..]),
            file.Length);
    }

    /// <summary>Reads the header of the file at <paramref name="path"/>.</summary>
    public static HeaderFacts Read(string path) => Read(File.ReadAllBytes(path));

    /// <summary>True when cluster and table size are ones the format allows (else both tools refuse the image before anything else matters).</summary>
    public bool HasValidGeometry =>
        ClusterSize is >= 4096 and <= 1 << 26 && (ClusterSize & (ClusterSize - 1)) == 0 && TableSize is >= 1 and <= 16 && (TableSize & (TableSize - 1)) == 0;

    private int Exponent => 2 * (System.Numerics.BitOperations.Log2(TableSize * (ClusterSize / 8))) + System.Numerics.BitOperations.Log2(ClusterSize);

    /// <summary>QEMU's largest image size, in its wrapping 64-bit arithmetic (QED-FORMAT.md §2.2): 0 when <c>ts²·cs³/64</c> reaches 2^64.</summary>
    public ulong QemuMaxImageSize => Exponent >= 64 ? 0 : 1UL << Exponent;

    /// <summary>Our largest image size: the same bound without the wrap, capped at <c>long.MaxValue</c> rounded down to 512.</summary>
    public ulong OurMaxImageSize => Exponent >= 63 ? (ulong)(long.MaxValue & ~511L) : 1UL << Exponent;

    /// <summary>Whole clusters in the file, the range check and leak counts work in.</summary>
    public long FileClusters => FileLength / ClusterSize;
}
