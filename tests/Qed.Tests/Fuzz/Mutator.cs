using System.Buffers.Binary;

namespace Qed.Tests.Fuzz;

/// <summary>Structure-aware mutations of a QED image: header fields, L1 and L2 entries, backing names, truncation, bit flips.</summary>
internal static class Mutator
{
    private static readonly (int Offset, int Size)[] s_fields =
    [
        (0, 4), (4, 4), (8, 4), (12, 4), (16, 8), (24, 8), (32, 8), (40, 8), (48, 8), (56, 4), (60, 4),
    ];

    public static byte[] Mutate(byte[] seed, Random random)
    {
        byte[] image = (byte[])seed.Clone();
        int count = random.Next(1, 4);
        for (int i = 0; i < count; i++)
        {
            image = random.Next(7) switch
            {
                0 => HeaderField(image, random),
                1 => TableEntry(image, random, level: 1),
                2 => TableEntry(image, random, level: 2),
                3 => BackingName(image, random),
                4 => Truncate(image, random),
                5 => FlipBits(image, random),
                _ => TableEntry(image, random, level: 2),
            };
        }
        return image;
    }

    internal static ulong Interesting(Random random, long fileLength, int clusterSize)
    {
        long clusters = Math.Max(1, fileLength / Math.Max(clusterSize, 1));
        return random.Next(12) switch
        {
            0 => 0,
            1 => 1,
            2 => ulong.MaxValue,
            3 => ulong.MaxValue - (ulong)random.Next(1 << 16),
            4 => (ulong)random.NextInt64(clusters + 4) * (ulong)clusterSize,
            5 => (ulong)random.NextInt64(clusters + 4) * (ulong)clusterSize + (ulong)random.Next(1, 4096),
            6 => (ulong)fileLength,
            7 => 1UL << random.Next(64),
            8 => (1UL << random.Next(64)) - 1,
            9 => (ulong)random.NextInt64() << random.Next(2),
            10 => (ulong)random.Next(0, 1 << 20),
            _ => (ulong)clusterSize * (ulong)random.Next(0, 4),
        };
    }

    private static int ClusterSize(byte[] image) =>
        image.Length >= 8 ? (int)Math.Clamp(BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(4)), 512, 1 << 26) : 4096;

    private static byte[] HeaderField(byte[] image, Random random)
    {
        if (image.Length < 64)
        {
            return image;
        }
        var (offset, size) = s_fields[random.Next(s_fields.Length)];
        ulong value = Interesting(random, image.Length, ClusterSize(image));
        if (offset == 16 && random.Next(2) == 0)
        {
            value = (ulong)(uint)random.Next(0, 8) | (random.Next(4) == 0 ? 1UL << random.Next(3, 64) : 0UL);
        }
        if (size == 4)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(offset), (uint)value);
        }
        else
        {
            BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(offset), value);
        }
        return image;
    }

    private static byte[] TableEntry(byte[] image, Random random, int level)
    {
        if (image.Length < 64)
        {
            return image;
        }
        int clusterSize = ClusterSize(image);
        ulong l1 = BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan(40));
        long tableBytes = (long)clusterSize * Math.Clamp(BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(8)), 1, 16);
        long table = (long)Math.Min(l1, (ulong)image.Length);
        if (level == 2)
        {
            // Follow a non-zero L1 entry to its table when there is one.
            var candidates = new List<long>();
            for (long i = 0; i < tableBytes / 8 && table + i * 8 + 8 <= image.Length; i++)
            {
                ulong entry = BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan((int)(table + i * 8)));
                if (entry != 0 && entry < (ulong)image.Length)
                {
                    candidates.Add((long)entry);
                }
            }
            if (candidates.Count == 0)
            {
                return image;
            }
            table = candidates[random.Next(candidates.Count)];
        }
        long index = random.Next(4) == 0 ? random.NextInt64(Math.Max(1, tableBytes / 8)) : random.Next(0, 64);
        long at = table + index * 8;
        if (at < 0 || at + 8 > image.Length)
        {
            return image;
        }
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan((int)at), Interesting(random, image.Length, clusterSize));
        return image;
    }

    private static byte[] BackingName(byte[] image, Random random)
    {
        if (image.Length < 128)
        {
            return image;
        }
        ulong features = BinaryPrimitives.ReadUInt64LittleEndian(image.AsSpan(16)) | 1;
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(16), features | (random.Next(2) == 0 ? 4UL : 0));
        string[] names = ["base.raw", "missing.qed", "fuzz.qed", "./fuzz.qed", "/", "..", "", "\0\0", new string('a', 300), "q-4k.qed", "/dev/null"];
        byte[] name = System.Text.Encoding.UTF8.GetBytes(names[random.Next(names.Length)]);
        uint offset = random.Next(3) == 0 ? (uint)Interesting(random, image.Length, ClusterSize(image)) : 64;
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(56), offset);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(60), random.Next(5) == 0 ? (uint)Interesting(random, image.Length, 4096) : (uint)name.Length);
        // In 64-bit: an offset near uint.MaxValue plus the name's length must not wrap into range.
        if (offset >= 64 && (long)offset + name.Length <= image.Length)
        {
            name.CopyTo(image, (int)offset);
        }
        return image;
    }

    internal static byte[] Truncate(byte[] image, Random random)
    {
        int length = random.Next(3) switch
        {
            0 => random.Next(0, Math.Max(1, image.Length)),
            1 => Math.Max(0, image.Length - random.Next(1, 8192)),
            _ => image.Length + random.Next(1, 70000),
        };
        Array.Resize(ref image, length);
        return image;
    }

    internal static byte[] FlipBits(byte[] image, Random random)
    {
        if (image.Length == 0)
        {
            return image;
        }
        int flips = random.Next(1, 8);
        for (int i = 0; i < flips; i++)
        {
            int at = random.Next(2) == 0 ? random.Next(Math.Min(512, image.Length)) : random.Next(image.Length);
            image[at] ^= (byte)(1 << random.Next(8));
        }
        return image;
    }
}
