using System.Buffers.Binary;

namespace Qed.Tests.Fuzz;

/// <summary>
/// Structure-aware mutations of a qcow2 image (big-endian): header fields, L1 and L2 entries (compressed descriptors,
/// ZERO flags, subcluster bitmaps), refcount table and block entries, header extensions, the snapshot table, the
/// backing name, truncation, bit flips. Everything it reads from the image is clamped first: the image may be insane.
/// </summary>
internal static class Qcow2Mutator
{
    private static readonly (int Offset, int Size)[] s_fields =
    [
        (4, 4), (8, 8), (16, 4), (20, 4), (24, 8), (32, 4), (36, 4), (40, 8), (48, 8), (56, 4), (60, 4), (64, 8),
        (72, 8), (80, 8), (88, 8), (96, 4), (100, 4), (104, 1),
    ];

    private const ulong CompressedFlag = 1UL << 62, CopiedFlag = 1UL << 63;

    public static byte[] Mutate(byte[] seed, Random random)
    {
        byte[] image = (byte[])seed.Clone();
        int count = random.Next(1, 4);
        for (int i = 0; i < count; i++)
        {
            image = random.Next(10) switch
            {
                0 => HeaderField(image, random),
                1 => L1Entry(image, random),
                2 or 3 => L2Entry(image, random),
                4 => Refcount(image, random),
                5 => Extension(image, random),
                6 => Snapshot(image, random),
                7 => BackingName(image, random),
                8 => Mutator.Truncate(image, random),
                _ => Mutator.FlipBits(image, random),
            };
        }
        return image;
    }

    private static int ClusterBits(byte[] image) =>
        image.Length >= 24 ? (int)Math.Clamp(BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(20)), 9, 21) : 16;

    private static ulong U64(byte[] image, long at) => at >= 0 && at + 8 <= image.Length ? BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan((int)at)) : 0;

    private static uint U32(byte[] image, long at) => at >= 0 && at + 4 <= image.Length ? BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan((int)at)) : 0;

    private static void Put(byte[] image, long at, ulong value, int size)
    {
        if (at < 0 || at + size > image.Length)
        {
            return;
        }
        switch (size)
        {
            case 1: image[at] = (byte)value; break;
            case 4: BinaryPrimitives.WriteUInt32BigEndian(image.AsSpan((int)at), (uint)value); break;
            default: BinaryPrimitives.WriteUInt64BigEndian(image.AsSpan((int)at), value); break;
        }
    }

    private static byte[] HeaderField(byte[] image, Random random)
    {
        var (offset, size) = s_fields[random.Next(s_fields.Length)];
        int clusterSize = 1 << ClusterBits(image);
        ulong value = Mutator.Interesting(random, image.Length, clusterSize);
        // Small fields and feature words: values near the valid ones find more paths than huge ones.
        if (offset is 4 or 20 or 96 or 104 or 32 && random.Next(2) == 0)
        {
            value = (ulong)random.Next(0, 24);
        }
        else if (offset is 72 or 80 or 88 && random.Next(2) == 0)
        {
            value = U64(image, offset) ^ (1UL << random.Next(random.Next(2) == 0 ? 6 : 64));
        }
        Put(image, offset, value, size);
        return image;
    }

    /// <summary>(offset, entry count) of the active L1 table, clamped to the file.</summary>
    private static (long Offset, long Count) L1Table(byte[] image)
    {
        long offset = (long)Math.Min(U64(image, 40), (ulong)image.Length);
        long count = Math.Min(U32(image, 36), (image.Length - offset) / 8);
        return (offset, count);
    }

    private static byte[] L1Entry(byte[] image, Random random)
    {
        var (table, count) = L1Table(image);
        if (count <= 0)
        {
            return image;
        }
        long index = random.NextInt64(count);
        ulong value = random.Next(3) switch
        {
            0 => Mutator.Interesting(random, image.Length, 1 << ClusterBits(image)),
            1 => U64(image, table + index * 8) ^ (1UL << random.Next(64)),
            _ => (Mutator.Interesting(random, image.Length, 1 << ClusterBits(image)) & 0x00FF_FFFF_FFFF_FE00) | CopiedFlag,
        };
        Put(image, table + index * 8, value, 8);
        return image;
    }

    private static byte[] L2Entry(byte[] image, Random random)
    {
        var (table, count) = L1Table(image);
        var l2Tables = new List<long>();
        for (long i = 0; i < Math.Min(count, 4096); i++)
        {
            ulong offset = U64(image, table + i * 8) & 0x00FF_FFFF_FFFF_FE00;
            if (offset != 0 && offset < (ulong)image.Length)
            {
                l2Tables.Add((long)offset);
            }
        }
        if (l2Tables.Count == 0)
        {
            return image;
        }
        int clusterBits = ClusterBits(image);
        bool extended = (U64(image, 72) & 0x10) != 0;
        int entrySize = extended ? 16 : 8;
        long l2 = l2Tables[random.Next(l2Tables.Count)];
        long index = random.Next(3) == 0 ? random.NextInt64((1L << clusterBits) / entrySize) : random.Next(0, 32);
        long at = l2 + index * entrySize;
        ulong old = U64(image, at);
        if (extended && random.Next(3) == 0)
        {
            ulong bitmap = random.Next(3) switch
            {
                0 => (ulong)random.NextInt64() | (ulong)random.Next(2) << 63,
                1 => U64(image, at + 8) ^ (1UL << random.Next(64)),
                _ => 0xFFFF_FFFFUL << (random.Next(2) * 32),
            };
            Put(image, at + 8, bitmap, 8);
            return image;
        }
        ulong value = random.Next(6) switch
        {
            0 => Mutator.Interesting(random, image.Length, 1 << clusterBits),
            1 => old ^ (1UL << random.Next(64)),
            2 => old | 1, // ZERO flag (or a reserved bit on v2 and extended L2)
            3 => CompressedFlag | CompressedDescriptor(image, random, clusterBits),
            4 => (old & CompressedFlag) != 0 ? old ^ (1UL << random.Next(70 - clusterBits, 62)) : old ^ CompressedFlag,
            _ => (Mutator.Interesting(random, image.Length, 1 << clusterBits) & 0x00FF_FFFF_FFFF_FE00) | CopiedFlag,
        };
        Put(image, at, value, 8);
        return image;
    }

    /// <summary>A descriptor (bits 0-61) pointing into, across or beyond the file, with any sector count.</summary>
    private static ulong CompressedDescriptor(byte[] image, Random random, int clusterBits)
    {
        int shift = 70 - clusterBits;
        ulong offset = random.Next(4) switch
        {
            0 => (ulong)random.NextInt64(Math.Max(1, image.Length)),
            1 => (ulong)Math.Max(0, image.Length - random.Next(1, 2048)),
            2 => (ulong)image.Length + (ulong)random.Next(0, 1 << 20),
            _ => (ulong)random.NextInt64() & ((1UL << shift) - 1),
        };
        ulong sectors = (ulong)random.NextInt64(1L << (clusterBits - 8));
        return (offset & ((1UL << shift) - 1)) | (sectors << shift);
    }

    private static byte[] Refcount(byte[] image, Random random)
    {
        long table = (long)Math.Min(U64(image, 48), (ulong)image.Length);
        long entries = Math.Min((long)U32(image, 56) << ClusterBits(image) >> 3, (image.Length - table) / 8);
        if (entries <= 0)
        {
            return image;
        }
        if (random.Next(2) == 0)
        {
            long index = random.Next(3) == 0 ? random.NextInt64(entries) : 0;
            Put(image, table + index * 8, Mutator.Interesting(random, image.Length, 1 << ClusterBits(image)), 8);
            return image;
        }
        // A byte of the first refcount block.
        long block = (long)(U64(image, table) & 0x00FF_FFFF_FFFF_FE00);
        if (block > 0 && block < image.Length)
        {
            long at = block + random.Next(Math.Min(64, image.Length - (int)block));
            image[at] = (byte)random.Next(256);
        }
        return image;
    }

    /// <summary>The header extensions after header_length (type, length, data; 8-byte aligned) in cluster 0.</summary>
    private static byte[] Extension(byte[] image, Random random)
    {
        long start = Math.Clamp(U32(image, 100), 72, 112);
        long at = start;
        var headers = new List<long>();
        for (int i = 0; i < 16 && at + 8 <= image.Length; i++)
        {
            headers.Add(at);
            uint type = U32(image, at), length = U32(image, at + 4);
            if (type == 0 || length > 4096)
            {
                break;
            }
            at += 8 + ((length + 7) & ~7u);
        }
        if (headers.Count == 0)
        {
            return image;
        }
        long header = headers[random.Next(headers.Count)];
        uint[] types = [0, 0xe2792aca, 0x6803f857, 0x0537be77, 0x23852875, 0x44415441, 0x4321, (uint)random.Next()];
        switch (random.Next(4))
        {
            case 0:
                Put(image, header, types[random.Next(types.Length)], 4);
                break;
            case 1:
                Put(image, header + 4, random.Next(2) == 0 ? (ulong)random.Next(0, 200) : Mutator.Interesting(random, image.Length, 4096), 4);
                break;
            default:
                long data = header + 8 + random.Next(0, 48);
                Put(image, data & ~7L, random.Next(2) == 0 ? Mutator.Interesting(random, image.Length, 1 << ClusterBits(image)) : (ulong)random.NextInt64(), 8);
                break;
        }
        return image;
    }

    private static byte[] Snapshot(byte[] image, Random random)
    {
        long table = (long)Math.Min(U64(image, 64), (ulong)image.Length);
        if (U32(image, 60) == 0 || table == image.Length)
        {
            // No table: sometimes claim one anyway.
            Put(image, 60, (ulong)random.Next(1, 4), 4);
            Put(image, 64, Mutator.Interesting(random, image.Length, 1 << ClusterBits(image)), 8);
            return image;
        }
        // Entry fields: L1 offset (0), L1 size (8), id/name sizes (12, 14), extra data size (36), then extra data.
        int[] fields = [0, 8, 12, 14, 36, 40, 48];
        long at = table + fields[random.Next(fields.Length)];
        ulong value = random.Next(2) == 0 ? Mutator.Interesting(random, image.Length, 1 << ClusterBits(image)) : (ulong)random.Next(0, 70000);
        Put(image, at, value, at - table is 12 or 14 ? 4 : 8);
        return image;
    }

    private static byte[] BackingName(byte[] image, Random random)
    {
        if (image.Length < 512)
        {
            return image;
        }
        string[] names = ["base.raw", "base.qcow2", "missing.qcow2", "fuzz.qcow2", "./fuzz.qcow2", "/", "..", "", "\0\0", new string('a', 1100), "c-64k.qcow2", "/dev/null"];
        byte[] name = System.Text.Encoding.UTF8.GetBytes(names[random.Next(names.Length)]);
        ulong offset = random.Next(3) == 0 ? Mutator.Interesting(random, image.Length, 1 << ClusterBits(image)) : 400;
        Put(image, 8, offset, 8);
        Put(image, 16, random.Next(5) == 0 ? (ulong)random.Next(0, 70000) : (ulong)name.Length, 4);
        if (offset >= 112 && offset < (ulong)image.Length && (ulong)name.Length <= (ulong)image.Length - offset)
        {
            name.CopyTo(image, (int)offset);
        }
        return image;
    }
}
