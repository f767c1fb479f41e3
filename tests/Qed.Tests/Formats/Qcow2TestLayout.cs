using System.Buffers.Binary;
using Qed.Formats.Qcow2;
using Qed.Formats.Qcow2.Compression;

namespace Qed.Tests.Formats;

/// <summary>Finds tables and entries in qcow2 files made by qemu-img, for tests that read or poke them directly.</summary>
internal static class Qcow2TestLayout
{
    public const ulong CopiedFlag = 1UL << 63;
    public const ulong OffsetMask = 0x00FF_FFFF_FFFF_FE00;

    /// <summary>Theory rows: every image name with every command name.</summary>
    public static TheoryData<string, string> EveryPair(IEnumerable<string> images, IEnumerable<string> commands)
    {
        var data = new TheoryData<string, string>();
        foreach (string image in images)
        {
            foreach (string command in commands)
            {
                data.Add(image, command);
            }
        }
        return data;
    }

    public static Qcow2Header Header(byte[] image) => Qcow2Header.Parse(image.AsSpan(0, Qcow2Header.ReadLength));

    /// <summary>File offset of the active L1 table's entry <paramref name="index"/>.</summary>
    public static long L1EntryOffset(Qcow2Header header, long index) => (long)header.L1TableOffset + index * 8;

    /// <summary>(guest offset, entry, file offset of the entry) of every allocated or compressed L2 entry, in guest order.</summary>
    public static IEnumerable<(long GuestOffset, ulong Entry, long EntryOffset)> DataEntries(byte[] image, Qcow2Header header)
    {
        int clusterBits = (int)header.ClusterBits;
        long l2Entries = header.L2Entries;
        for (long l1 = 0; l1 < header.L1Size; l1++)
        {
            ulong l2Offset = BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan((int)L1EntryOffset(header, l1))) & OffsetMask;
            if (l2Offset == 0)
            {
                continue;
            }
            for (long l2 = 0; l2 < l2Entries; l2++)
            {
                long entryOffset = (long)l2Offset + l2 * header.L2EntrySize;
                ulong entry = BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan((int)entryOffset));
                if ((entry & Qcow2CompressedDescriptor.CompressedFlag) != 0 || (entry & OffsetMask) != 0)
                {
                    yield return (((l1 * l2Entries) + l2) << clusterBits, entry, entryOffset);
                }
            }
        }
    }

    /// <summary>Writes a big-endian integer of <paramref name="width"/> bytes (1, 2, 4 or 8) into a file at <paramref name="offset"/>.</summary>
    public static void PokeBigEndian(string path, long offset, ulong value, int width)
    {
        byte[] bytes = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(bytes, value);
        Infrastructure.Tools.Poke(path, offset, bytes[(8 - width)..]);
    }
}
