using System.Buffers.Binary;
using System.Globalization;
using Qed.Tests.Infrastructure;
using static Qed.Tests.Formats.Qcow2CheckOracle;

namespace Qed.Tests.Formats;

/// <summary>
/// Seeded random qcow2 images made by qemu-img and qemu-io (cluster sizes 512 B-64 KiB, v2/v3, every refcount width,
/// extended L2, compressed clusters, snapshots, bitmaps), checked clean, then corrupted by random pokes into their
/// metadata (L1, L2, refcount table and blocks, snapshot table): our check says exactly what qemu-img check says each time.
/// </summary>
public sealed class Qcow2CheckRandomTests
{
    private const int Images = 24;

    [Fact]
    public void Random_images_and_corruptions_same_as_qemu_img()
    {
        int seed = TestSeed.For(nameof(Random_images_and_corruptions_same_as_qemu_img));
        var random = new Random(seed);
        int compared = 0;
        int damaged = 0;
        using var dir = new TempDirectory();
        for (int n = 0; n < Images; n++)
        {
            string path = dir.File($"r{n}.qcow2");
            string recipe = MakeImage(random, dir.Path, path);
            AssertSame(path, $"image {n} ({recipe}), clean");
            compared++;
            var pokes = new List<string>();
            int count = random.Next(1, 4);
            for (int p = 0; p < count; p++)
            {
                pokes.Add(Poke(random, path));
            }
            if (AssertSame(path, $"image {n} ({recipe}) after {string.Join("; ", pokes)}").ExitCode != 0)
            {
                damaged++;
            }
            compared++;
        }
        TestSeed.Report($"{nameof(Qcow2CheckRandomTests)}: {compared} checks compared with qemu-img, {damaged} of {Images} poked images found damaged");
        Assert.Equal(2 * Images, compared);
        // The pokes must inject something: most of them break a refcount, an entry or a flag.
        Assert.True(damaged >= Images / 2, $"only {damaged} of {Images} poked images were found damaged");
    }

    private static Outcome AssertSame(string path, string what)
    {
        try
        {
            return Qcow2CheckOracle.AssertSame(path);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new Xunit.Sdk.XunitException($"{what}: {e.Message}");
        }
    }

    /// <summary>Makes a random image with QEMU; returns its recipe.</summary>
    private static string MakeImage(Random random, string directory, string path)
    {
        int clusterSize = random.Next(4) switch { 0 => 512, 1 => 4096, 2 => 16384, _ => 65536 };
        bool v2 = random.Next(5) == 0;
        int refcountBits = v2 ? 16 : 1 << random.Next(7);
        bool extended = !v2 && clusterSize >= 16384 && random.Next(3) == 0;
        long size = (random.Next(4, 33) * 2L) << 20;
        string options = string.Create(CultureInfo.InvariantCulture,
            $"cluster_size={clusterSize},compat={(v2 ? "0.10" : "1.1")},refcount_bits={refcountBits},extended_l2={(extended ? "on" : "off")}");
        Tools.QemuImg(directory, "create", "-q", "-f", "qcow2", "-o", options, path, size.ToString(CultureInfo.InvariantCulture));
        var recipe = new List<string> { options, $"size={size}" };

        void Write(int writes)
        {
            var commands = new List<string>();
            for (int i = 0; i < writes; i++)
            {
                long offset = random.NextInt64(size / 512) * 512;
                long length = Math.Min(size - offset, random.Next(1, 512) * 512L);
                string command = random.Next(8) switch
                {
                    0 => $"write -z {offset} {length}",
                    1 => $"discard {offset} {length}",
                    2 => CompressedWrite(random, size, clusterSize),
                    _ => $"write -P 0x{random.Next(1, 256):x2} {offset} {length}",
                };
                commands.Add(command);
            }
            // QEMU refuses some of these (a compressed write over an allocated cluster): the image is whatever QEMU left.
            var arguments = new List<string> { "-f", "qcow2" };
            foreach (string command in commands)
            {
                arguments.Add("-c");
                arguments.Add(command);
            }
            arguments.Add(path);
            Tools.Run("qemu-io", arguments, directory);
            recipe.AddRange(commands);
        }

        Write(random.Next(2, 10));
        if (refcountBits > 1 && random.Next(3) == 0)
        {
            // Narrow refcounts can refuse a snapshot of shared clusters; the image stays as it was.
            var snapshot = Tools.Run("qemu-img", ["snapshot", "-c", "s1", path], directory);
            recipe.Add(snapshot.ExitCode == 0 ? "snapshot s1" : "snapshot s1 refused");
            Write(random.Next(1, 5));
        }
        if (!v2 && random.Next(5) == 0)
        {
            Tools.QemuImg(directory, "bitmap", "--add", path, "bm0");
            recipe.Add("bitmap bm0");
        }
        return string.Join(", ", recipe);
    }

    private static string CompressedWrite(Random random, long size, int clusterSize)
    {
        long cluster = random.NextInt64(size / clusterSize);
        return $"write -c -P 0x{random.Next(1, 256):x2} {cluster * clusterSize} {clusterSize}";
    }

    /// <summary>One random change to the image's metadata; returns what it did.</summary>
    private static string Poke(Random random, string path)
    {
        byte[] file = File.ReadAllBytes(path);
        var header = Qed.Formats.Qcow2.Qcow2Header.Parse(file);
        int cb = (int)header.ClusterBits;
        long cs = 1L << cb;
        long clusters = (file.Length + cs - 1) / cs;

        ulong ReadU64(long at) => at + 8 <= file.Length ? BinaryPrimitives.ReadUInt64BigEndian(file.AsSpan((int)at)) : 0;

        // Slots that hold a table entry: L1 entries, L2 entries (first 8 bytes), refcount table entries.
        var tableSlots = new List<long>();
        for (long i = 0; i < header.L1Size; i++)
        {
            long at = (long)header.L1TableOffset + i * 8;
            ulong entry = ReadU64(at);
            if (entry != 0 || random.Next(8) == 0)
            {
                tableSlots.Add(at);
            }
            ulong l2 = entry & 0x00FF_FFFF_FFFF_FE00;
            if (l2 != 0 && (long)l2 + cs <= file.Length)
            {
                for (long j = 0; j < cs / header.L2EntrySize; j++)
                {
                    long slot = (long)l2 + j * header.L2EntrySize;
                    if (ReadU64(slot) != 0 || random.Next(64) == 0)
                    {
                        tableSlots.Add(slot);
                    }
                }
            }
        }
        var refblocks = new List<long>();
        for (long i = 0; i < header.RefcountTableClusters * cs / 8; i++)
        {
            long at = (long)header.RefcountTableOffset + i * 8;
            ulong entry = ReadU64(at);
            if (entry != 0)
            {
                tableSlots.Add(at);
                refblocks.Add((long)(entry & ~0x1FFUL));
            }
        }

        int kind = random.Next(10);
        if (kind < 4 && refblocks.Count > 0)
        {
            // A refcount of a cluster in (or just past) the file.
            long cluster = random.NextInt64(clusters + 2);
            int bits = header.RefcountBits;
            long perBlock = cs * 8 / bits;
            int blockIndex = (int)(cluster / perBlock);
            // A block offset a previous poke made hostile (0, negative as a long, past the end) is not written through.
            if (blockIndex < refblocks.Count && refblocks[blockIndex] > 0 && refblocks[blockIndex] + cs <= file.Length)
            {
                ulong max = bits == 64 ? ulong.MaxValue : (1UL << bits) - 1;
                ulong value = random.Next(4) switch { 0 => 0, 1 => Math.Min(max, 2), 2 => max, _ => 1 };
                WriteRefcount(path, refblocks[blockIndex], cluster % perBlock, bits, value);
                return $"refcount of cluster {cluster} = {value}";
            }
        }
        if (kind == 4 && header.SnapshotCount > 0)
        {
            long at = (long)header.SnapshotsOffset + random.Next(2) * 8;
            ulong old = ReadU64(at);
            ulong value = at == (long)header.SnapshotsOffset ? old + (ulong)(random.Next(2) == 0 ? 0x200 : cs * random.Next(1, 4)) : old ^ (1UL << (32 + random.Next(24)));
            PokeBigEndian(path, at, value);
            return $"snapshot table u64 at 0x{at:x}: {Hex(old)} -> {Hex(value)}";
        }
        if (tableSlots.Count == 0)
        {
            return "nothing to poke";
        }
        long target = tableSlots[random.Next(tableSlots.Count)];
        ulong before = ReadU64(target);
        ulong flags = before & 0xC000_0000_0000_0001;
        ulong after = random.Next(6) switch
        {
            0 => before ^ (1UL << random.Next(64)),
            1 => 0,
            2 => flags | ((ulong)random.NextInt64(clusters) << cb),
            3 => flags | ((ulong)(clusters + random.Next(0, 3)) << cb),
            4 => before + 0x200,
            _ => (before & ~(1UL << 63)) | (~before & (1UL << 63)),
        };
        PokeBigEndian(path, target, after);
        return $"u64 at 0x{target:x}: {Hex(before)} -> {Hex(after)}";
    }

    private static void WriteRefcount(string path, long block, long index, int bits, ulong value)
    {
        if (bits >= 8)
        {
            PokeBigEndian(path, block + index * (bits / 8), value, bits / 8);
            return;
        }
        long bit = index * bits;
        long at = block + bit / 8;
        byte old;
        using (var stream = File.OpenRead(path))
        {
            stream.Seek(at, SeekOrigin.Begin);
            old = (byte)stream.ReadByte();
        }
        int shift = (int)(bit % 8);
        int mask = ((1 << bits) - 1) << shift;
        Tools.Poke(path, at, (byte)((old & ~mask) | (((int)value << shift) & mask)));
    }
}
