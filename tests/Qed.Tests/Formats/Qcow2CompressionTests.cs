using System.Buffers.Binary;
using System.Text;
using Qed.Formats.Qcow2;
using Qed.Formats.Qcow2.Compression;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Formats;

/// <summary>
/// The compressed-cluster codecs against QEMU: every compressed cluster qemu-img writes decodes to what QEMU reads,
/// and clusters we compress, patched into qemu-img-made images, read back through qemu-img as the data we put in.
/// </summary>
public sealed class Qcow2CompressionTests
{
    private const ulong CopiedFlag = 1UL << 63;
    private const ulong OffsetMask = 0x00FF_FFFF_FFFF_FE00;

    /// <summary>QCOW2.md §16.1 Q07, Q08, Q19 (Qcow2Fixtures): `qemu-img convert -c` of 3 MiB of text and 1 MiB of noise.</summary>
    public static TheoryData<string, int, int> QemuCompressedImages => new()
    {
        // fixture, compressed clusters, uncompressed clusters
        { "Q07", 48, 16 },
        { "Q08", 48, 16 },
        { "Q19", 768, 256 },
    };

    /// <summary>
    /// Each compressed cluster of a qemu-img-made image decodes to QEMU's view of that cluster (and the disk rebuilt
    /// from them has the §16.2 digest); its descriptor encodes back to the same entry; our encoder gives QEMU's bytes
    /// exactly and keeps noise uncompressed as QEMU did.
    /// </summary>
    [Theory]
    [MemberData(nameof(QemuCompressedImages))]
    public void Qemu_compressed_clusters_decode_to_qemus_read(string name, int expectedCompressed, int expectedPlain)
    {
        var fixture = Qcow2Fixtures.Get(name);
        using var dir = new TempDirectory();
        Tools.QemuImg(dir.Path, "convert", "-f", "qcow2", "-O", "raw", fixture.Path, "qemu.raw");
        byte[] image = File.ReadAllBytes(fixture.Path);
        byte[] disk = File.ReadAllBytes(dir.File("qemu.raw"));
        byte[] rebuilt = new byte[disk.Length];
        var header = Qcow2Header.Parse(image.AsSpan(0, Qcow2Header.ReadLength));
        var type = (Qcow2CompressionType)header.CompressionType;
        int clusterBits = (int)header.ClusterBits, clusterSize = 1 << clusterBits;

        int compressed = 0, plain = 0, identical = 0;
        byte[] cluster = new byte[clusterSize], ours = new byte[clusterSize];
        foreach (var (guestOffset, entry, _) in DataEntries(image, header))
        {
            var expected = disk.AsSpan((int)guestOffset, clusterSize);
            if ((entry & Qcow2CompressedDescriptor.CompressedFlag) == 0)
            {
                plain++;
                image.AsSpan((int)(entry & OffsetMask), clusterSize).CopyTo(rebuilt.AsSpan((int)guestOffset));
                Assert.Equal(-1, Qcow2Compression.Compress(type, expected, ours));
                continue;
            }
            compressed++;
            Assert.Equal(0UL, entry & CopiedFlag);
            var descriptor = Qcow2CompressedDescriptor.Decode(entry, clusterBits);
            Assert.True(descriptor.EndOffset <= (ulong)image.Length, $"span of 0x{entry:x16} ends beyond the file");
            Array.Clear(cluster);
            Qcow2Compression.Decompress(type, image.AsSpan((int)descriptor.HostOffset, descriptor.Length), cluster);
            Assert.True(expected.SequenceEqual(cluster), $"{name}: cluster at guest 0x{guestOffset:x} differs from qemu's read");
            cluster.CopyTo(rebuilt, (int)guestOffset);

            int length = Qcow2Compression.Compress(type, expected, ours);
            Assert.InRange(length, 1, clusterSize - 1);
            if (image.AsSpan((int)descriptor.HostOffset, length).SequenceEqual(ours.AsSpan(0, length)))
            {
                identical++;
                Assert.Equal(entry, Qcow2CompressedDescriptor.Encode(descriptor.HostOffset, length, clusterBits));
            }
        }
        TestSeed.Report($"{name}: {compressed} compressed clusters decoded, {plain} plain, {identical} of ours byte-identical to qemu's");
        Assert.Equal(expectedCompressed, compressed);
        Assert.Equal(expectedPlain, plain);
        Assert.Equal(fixture.Digest, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(rebuilt)));
        // zlib: the same library with QEMU's parameters; zstd: ZstdSharp is a faithful port of the same encoder.
        Assert.Equal(compressed, identical);
    }

    public static TheoryData<int, string> ClusterSizesAndTypes()
    {
        var data = new TheoryData<int, string>();
        for (int bits = 9; bits <= 21; bits++)
        {
            data.Add(bits, "zlib");
            data.Add(bits, "zstd");
        }
        return data;
    }

    /// <summary>
    /// Clusters of every kind (text, random, zeros, noise, repeats farther back than 4 KiB) compressed by us, packed
    /// byte-wise after the end of a qemu-img-made image and patched in as compressed entries: qemu-img reads the
    /// data we compressed, and so do we.
    /// </summary>
    [Theory]
    [MemberData(nameof(ClusterSizesAndTypes))]
    public void Our_compressed_clusters_are_read_by_qemu(int clusterBits, string compression)
    {
        var type = TypeNamed(compression);
        int clusterSize = 1 << clusterBits;
        var random = new Random(TestSeed.For($"{nameof(Our_compressed_clusters_are_read_by_qemu)}({clusterBits}, {type})"));
        byte[][] clusters = SampleClusters(clusterSize, random);
        int count = clusters.Length;
        using var dir = new TempDirectory();
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "-o", $"cluster_size={clusterSize},compression_type={compression}", "x.qcow2",
            (2L * count * clusterSize).ToString(System.Globalization.CultureInfo.InvariantCulture));
        // Allocates the L2 table(s) and a cluster per entry; the entries are then replaced by ours.
        Tools.QemuIo(dir.Path, "qcow2", "x.qcow2", $"write -P 0x5a 0 {count * clusterSize}");

        byte[] image = File.ReadAllBytes(dir.File("x.qcow2"));
        var header = Qcow2Header.Parse(image.AsSpan(0, Qcow2Header.ReadLength));
        var entries = DataEntries(image, header).ToList();
        Assert.Equal(count, entries.Count);

        using var output = new MemoryStream();
        output.Write(image);
        // Start mid-sector so spans straddle sectors and clusters as QEMU's packing does.
        output.Write(new byte[(clusterSize - image.Length % clusterSize) % clusterSize + 100]);
        byte[] buffer = new byte[clusterSize];
        int compressedCount = 0;
        for (int i = 0; i < count; i++)
        {
            int length = Qcow2Compression.Compress(type, clusters[i], buffer);
            ulong newEntry;
            if (length < 0)
            {
                AlignTo(output, clusterSize);
                newEntry = CopiedFlag | (ulong)output.Position;
                output.Write(clusters[i]);
            }
            else
            {
                compressedCount++;
                newEntry = Qcow2CompressedDescriptor.Encode((ulong)output.Position, length, clusterBits);
                var descriptor = Qcow2CompressedDescriptor.Decode(newEntry, clusterBits);
                Assert.Equal((ulong)output.Position, descriptor.HostOffset);
                Assert.InRange(descriptor.Length, length, length + 511);
                output.Write(buffer, 0, length);
            }
            PatchEntry(output, entries[i].EntryOffset, newEntry);
        }
        // QEMU reads whole sectors of the last span: end the file on a sector boundary.
        AlignTo(output, Qcow2CompressedDescriptor.SectorSize);
        File.WriteAllBytes(dir.File("x.qcow2"), output.ToArray());

        byte[] expected = new byte[2 * count * clusterSize];
        for (int i = 0; i < count; i++)
        {
            clusters[i].CopyTo(expected, i * clusterSize);
        }
        Tools.QemuImg(dir.Path, "convert", "-f", "qcow2", "-O", "raw", "x.qcow2", "qemu.raw");
        Assert.True(expected.AsSpan().SequenceEqual(File.ReadAllBytes(dir.File("qemu.raw"))), "qemu-img reads other data than we compressed");

        byte[] patched = output.ToArray();
        foreach (var (guestOffset, entry, _) in DataEntries(patched, header).Where(e => (e.Entry & Qcow2CompressedDescriptor.CompressedFlag) != 0))
        {
            var descriptor = Qcow2CompressedDescriptor.Decode(entry, clusterBits);
            Qcow2Compression.Decompress(type, patched.AsSpan((int)descriptor.HostOffset, descriptor.Length), buffer);
            Assert.True(buffer.AsSpan().SequenceEqual(expected.AsSpan((int)guestOffset, clusterSize)));
        }
        // Text, zeros, small-alphabet random and the far repeats compress at every size; noise never does.
        Assert.Equal(count - 1, compressedCount);
    }

    /// <summary>
    /// Python's zlib (the system zlib) inflating with windowBits -12 in 512-byte steps: every back-reference that
    /// reaches beyond the current step is checked against the 4 KiB window ("invalid distance too far back").
    /// QEMU 7.2 inflates a cluster in one call, which checks only references beyond the cluster's start, so it is
    /// not strict enough to prove the window; this is.
    /// </summary>
    private const string StrictInflate = """
        import sys, zlib
        for path in sys.argv[1:]:
            data = open(path, 'rb').read()
            inflater = zlib.decompressobj(-12)
            out = bytearray()
            try:
                chunk = inflater.decompress(data, 512)
                while chunk:
                    out += chunk
                    chunk = inflater.decompress(inflater.unconsumed_tail, 512)
                print(path, 'ok', len(out))
            except zlib.error as e:
                print(path, 'refused', e)
        """;

    /// <summary>
    /// Our zlib streams never reach back more than 4 KiB (QEMU's window, QCOW2.md §5.5), at every cluster size and
    /// on data with repeats far beyond the window; the control, a 32 KiB-window DeflateStream stream of the same
    /// cluster, is refused by the same strict inflater.
    /// </summary>
    [Fact]
    public void Our_zlib_streams_stay_within_a_4_KiB_window()
    {
        var random = new Random(TestSeed.For(nameof(Our_zlib_streams_stay_within_a_4_KiB_window)));
        using var dir = new TempDirectory();
        var files = new List<(string Name, int Length)>();
        for (int bits = 12; bits <= 21; bits++)
        {
            int clusterSize = 1 << bits;
            byte[] buffer = new byte[clusterSize];
            byte[][] clusters = SampleClusters(clusterSize, random);
            for (int i = 0; i < clusters.Length; i++)
            {
                int length = Qcow2Compression.Compress(Qcow2CompressionType.Zlib, clusters[i], buffer);
                if (length > 0)
                {
                    string name = $"c{bits}-{i}.z";
                    File.WriteAllBytes(dir.File(name), buffer.AsSpan(0, length).ToArray());
                    files.Add((name, clusterSize));
                }
            }
        }
        byte[] far = FarRepeats(65536, 16384, random);
        using (var wide = new FileStream(dir.File("control.z"), FileMode.Create))
        using (var deflate = new System.IO.Compression.DeflateStream(wide, System.IO.Compression.CompressionLevel.Optimal))
        {
            deflate.Write(far);
        }

        var result = Tools.Run("python3", ["-c", StrictInflate, "control.z", .. files.Select(f => f.Name)], dir.Path);
        string[] lines = result.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(files.Count + 1, lines.Length);
        Assert.StartsWith("control.z refused", lines[0], StringComparison.Ordinal);
        for (int i = 0; i < files.Count; i++)
        {
            Assert.Equal($"{files[i].Name} ok {files[i].Length}", lines[i + 1]);
        }
        TestSeed.Report($"{files.Count} zlib streams (4 KiB..2 MiB clusters) inflated with a 4 KiB window");
        Assert.Equal(10 * 5, files.Count); // per size: all but the noise cluster compress
    }

    /// <summary>The verified descriptor of QCOW2.md §5.5 and the layout table's extremes.</summary>
    [Fact]
    public void Descriptor_decodes_the_verified_examples()
    {
        var verified = Qcow2CompressedDescriptor.Decode(0x4E00000000050000, 16);
        Assert.Equal(new Qcow2CompressedDescriptor(0x50000, 29184), verified);
        Assert.Equal(5, verified.FirstCluster(16));
        Assert.Equal(5, verified.LastCluster(16));
        Assert.Equal(0x4E00000000050000UL, Qcow2CompressedDescriptor.Encode(0x50000, 29184 - 300, 16));

        // 512 B clusters: one count bit (61), at most 1 KiB; 2 MiB clusters: 13 count bits, at most 4 MiB.
        Assert.Equal(new Qcow2CompressedDescriptor(0x1FFF_FFFF_FFFF_FFFF, 513), Qcow2CompressedDescriptor.Decode(0x7FFF_FFFF_FFFF_FFFF, 9));
        Assert.Equal(new Qcow2CompressedDescriptor(0, 4 << 20), Qcow2CompressedDescriptor.Decode(0x3FFE_0000_0000_0000, 21));
        // Bit 63 (never set by QEMU on compressed entries) is not part of the descriptor.
        Assert.Equal(Qcow2CompressedDescriptor.Decode(0x4E00000000050000, 16), Qcow2CompressedDescriptor.Decode(0xCE00000000050000, 16));
        var crossing = Qcow2CompressedDescriptor.Decode(Qcow2CompressedDescriptor.Encode(0x5FF10, 4000, 16), 16);
        Assert.Equal(5, crossing.FirstCluster(16));
        Assert.Equal(6, crossing.LastCluster(16));
    }

    /// <summary>Encode then Decode gives back the offset and a span covering the bytes to the end of their last sector.</summary>
    [Fact]
    public void Descriptor_round_trips_at_every_cluster_size()
    {
        var random = new Random(TestSeed.For(nameof(Descriptor_round_trips_at_every_cluster_size)));
        int cases = 0;
        for (int bits = 9; bits <= 21; bits++)
        {
            int maxSpan = 2 << bits; // count bits allow twice a cluster
            for (int i = 0; i < 1000; i++)
            {
                ulong offset = (ulong)random.NextInt64(1L << Math.Min(62, 70 - bits - 1)) * 2 + (ulong)random.Next(2);
                offset &= (1UL << (70 - bits)) - 1;
                int length = 1 + random.Next(maxSpan - (int)(offset & 511));
                ulong entry = Qcow2CompressedDescriptor.Encode(offset, length, bits);
                Assert.Equal(Qcow2CompressedDescriptor.CompressedFlag, entry & (3UL << 62));
                var descriptor = Qcow2CompressedDescriptor.Decode(entry, bits);
                Assert.Equal(offset, descriptor.HostOffset);
                Assert.Equal((offset + (ulong)length + 511) / 512 * 512, descriptor.EndOffset);
                cases++;
            }
            Assert.Throws<ArgumentOutOfRangeException>(() => Qcow2CompressedDescriptor.Encode(0, maxSpan + 1, bits));
            Assert.Throws<ArgumentOutOfRangeException>(() => Qcow2CompressedDescriptor.Encode(1UL << (70 - bits), 100, bits));
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => Qcow2CompressedDescriptor.Decode(0, 8));
        Assert.Throws<ArgumentOutOfRangeException>(() => Qcow2CompressedDescriptor.Decode(0, 22));
        Assert.Equal(13 * 1000, cases);
    }

    public static TheoryData<string> Types => new() { "zlib", "zstd" };

    /// <summary>Truncated, empty, short and garbage input: one-line corruption errors, no write past the cluster.</summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Hostile_input_is_a_corruption_error(string compression)
    {
        var type = TypeNamed(compression);
        const int ClusterSize = 65536;
        byte[] text = TextCluster(ClusterSize, 0);
        byte[] stream = new byte[ClusterSize];
        int length = Qcow2Compression.Compress(type, text, stream);
        Assert.InRange(length, 1, ClusterSize - 1);
        byte[] half = new byte[ClusterSize];
        int halfLength = Qcow2Compression.Compress(type, text.AsSpan(0, ClusterSize / 2), half);

        AssertCorrupt(type, [], ClusterSize);
        AssertCorrupt(type, stream.AsSpan(0, length / 2), ClusterSize);
        AssertCorrupt(type, stream.AsSpan(0, 1), ClusterSize);
        AssertCorrupt(type, half.AsSpan(0, halfLength), ClusterSize); // decodes to half a cluster
        AssertCorrupt(type, new byte[600], ClusterSize);
        AssertCorrupt(type, Enumerable.Repeat((byte)0xFF, 600).ToArray(), ClusterSize);
        // A whole cluster's stream into a smaller cluster: zlib just stops (QEMU does too), zstd's frame is longer.
        if (type == Qcow2CompressionType.Zstd)
        {
            AssertCorrupt(type, stream.AsSpan(0, length), ClusterSize / 2);
        }
        // And the valid stream with trailing bytes of another cluster still decodes.
        byte[] trailing = new byte[length + 700];
        stream.AsSpan(0, length).CopyTo(trailing);
        new Random(1).NextBytes(trailing.AsSpan(length));
        byte[] output = new byte[ClusterSize];
        Qcow2Compression.Decompress(type, trailing, output);
        Assert.Equal(text, output);
    }

    /// <summary>zstd frames whose header lies about the content size, or claims a huge window, are refused or bounded.</summary>
    [Fact]
    public void Zstd_frames_that_lie_are_refused()
    {
        const int ClusterSize = 65536;
        byte[] text = TextCluster(ClusterSize, 0);
        byte[] frame = new byte[ClusterSize];
        int length = Qcow2Compression.Compress(Qcow2CompressionType.Zstd, text, frame);
        // Our frames are single-segment, no dictionary, no checksum, with a 2-byte content size (stored minus 256).
        Assert.Equal(0xFD2FB528u, BinaryPrimitives.ReadUInt32LittleEndian(frame));
        Assert.Equal(0x60, frame[4]);
        Assert.Equal(ClusterSize - 256, BinaryPrimitives.ReadUInt16LittleEndian(frame.AsSpan(5)));

        byte[] lying = frame.AsSpan(0, length).ToArray();
        BinaryPrimitives.WriteUInt16LittleEndian(lying.AsSpan(5), ClusterSize / 2 - 256); // claims half: more data follows
        AssertCorrupt(Qcow2CompressionType.Zstd, lying, ClusterSize);
        AssertCorrupt(Qcow2CompressionType.Zstd, lying, ClusterSize / 2);
        BinaryPrimitives.WriteUInt16LittleEndian(lying.AsSpan(5), ushort.MaxValue); // claims 65791: ends early
        AssertCorrupt(Qcow2CompressionType.Zstd, lying, ClusterSize);
        AssertCorrupt(Qcow2CompressionType.Zstd, lying, ClusterSize + 255);

        // No content size, a 2 GiB window (descriptor 0x00: window byte 0xA8 = 2^31): refused, nothing allocated.
        byte[] hugeWindow = [0x28, 0xB5, 0x2F, 0xFD, 0x00, 0xA8, 0x01, 0x00, 0x00];
        AssertCorrupt(Qcow2CompressionType.Zstd, hugeWindow, ClusterSize);
        // A raw block of the whole cluster in a frame that declares no size and a 128 MiB window: decodes, in place.
        byte[] rawBlock = new byte[6 + 3 + ClusterSize];
        byte[] magicAndWindow = [0x28, 0xB5, 0x2F, 0xFD, 0x00, 0x88];
        magicAndWindow.CopyTo(rawBlock, 0);
        uint blockHeader = 1u | ((uint)ClusterSize << 3); // last block, raw, size
        rawBlock[6] = (byte)blockHeader;
        rawBlock[7] = (byte)(blockHeader >> 8);
        rawBlock[8] = (byte)(blockHeader >> 16);
        text.CopyTo(rawBlock, 9);
        byte[] output = new byte[ClusterSize];
        Qcow2Compression.Decompress(Qcow2CompressionType.Zstd, rawBlock, output);
        Assert.Equal(text, output);
    }

    /// <summary>
    /// Seeded mutations (bit flips, cuts, splices) of valid streams: each decodes or fails with a corruption error,
    /// never another exception, and never writes outside the cluster.
    /// </summary>
    [Theory]
    [MemberData(nameof(Types))]
    public void Mutated_streams_never_escape(string compression)
    {
        var type = TypeNamed(compression);
        const int ClusterSize = 4096, Cases = 3000;
        var random = new Random(TestSeed.For($"{nameof(Mutated_streams_never_escape)}({type})"));
        byte[] stream = new byte[ClusterSize];
        byte[] guarded = new byte[ClusterSize + 64];
        int ran = 0, failed = 0;
        for (int i = 0; i < Cases; i++)
        {
            byte[] cluster = i % 2 == 0 ? TextCluster(ClusterSize, random.Next(100000)) : SmallAlphabetCluster(ClusterSize, random);
            int length = Qcow2Compression.Compress(type, cluster, stream);
            Assert.True(length > 0);
            byte[] mutated = stream.AsSpan(0, length).ToArray();
            int flips = 1 + random.Next(8);
            for (int f = 0; f < flips; f++)
            {
                mutated[random.Next(mutated.Length)] ^= (byte)(1 << random.Next(8));
            }
            if (random.Next(4) == 0)
            {
                mutated = mutated.AsSpan(0, random.Next(mutated.Length)).ToArray();
            }
            guarded.AsSpan().Fill(0xEE);
            try
            {
                Qcow2Compression.Decompress(type, mutated, guarded.AsSpan(0, ClusterSize));
            }
            catch (QedCorruptionException exception)
            {
                Assert.DoesNotContain('\n', exception.Message);
                failed++;
            }
            Assert.True(guarded.AsSpan(ClusterSize).IndexOfAnyExcept((byte)0xEE) < 0, "the decoder wrote past the cluster");
            ran++;
        }
        TestSeed.Report($"{type}: {ran} mutated streams, {failed} refused");
        Assert.Equal(Cases, ran);
        Assert.True(failed > 0);
    }

    /// <summary>Compress/Decompress from many threads at once give the single-threaded answers.</summary>
    [Fact]
    public void Codecs_are_thread_safe()
    {
        const int ClusterSize = 65536;
        byte[][] clusters = Enumerable.Range(0, 16).Select(i => TextCluster(ClusterSize, i * 1000)).ToArray();
        var expected = new Dictionary<(Qcow2CompressionType, int), byte[]>();
        foreach (var type in new[] { Qcow2CompressionType.Zlib, Qcow2CompressionType.Zstd })
        {
            for (int i = 0; i < clusters.Length; i++)
            {
                byte[] buffer = new byte[ClusterSize];
                int length = Qcow2Compression.Compress(type, clusters[i], buffer);
                expected[(type, i)] = buffer.AsSpan(0, length).ToArray();
            }
        }
        int rounds = 0;
        Parallel.For(0, 400, new ParallelOptions { MaxDegreeOfParallelism = 8 }, n =>
        {
            var type = n % 2 == 0 ? Qcow2CompressionType.Zlib : Qcow2CompressionType.Zstd;
            int i = n / 2 % clusters.Length;
            byte[] buffer = new byte[ClusterSize], back = new byte[ClusterSize];
            int length = Qcow2Compression.Compress(type, clusters[i], buffer);
            Assert.True(buffer.AsSpan(0, length).SequenceEqual(expected[(type, i)]));
            Qcow2Compression.Decompress(type, buffer.AsSpan(0, length), back);
            Assert.True(back.AsSpan().SequenceEqual(clusters[i]));
            Interlocked.Increment(ref rounds);
        });
        Assert.Equal(400, rounds);
    }

    private static Qcow2CompressionType TypeNamed(string name) => name == "zstd" ? Qcow2CompressionType.Zstd : Qcow2CompressionType.Zlib;

    private static void AssertCorrupt(Qcow2CompressionType type, ReadOnlySpan<byte> input, int clusterSize)
    {
        byte[] guarded = new byte[clusterSize + 64];
        guarded.AsSpan(clusterSize).Fill(0xEE);
        byte[] copy = input.ToArray();
        var exception = Assert.Throws<QedCorruptionException>(() => Qcow2Compression.Decompress(type, copy, guarded.AsSpan(0, clusterSize)));
        Assert.DoesNotContain('\n', exception.Message);
        Assert.StartsWith("compressed cluster (", exception.Message, StringComparison.Ordinal);
        Assert.True(guarded.AsSpan(clusterSize).IndexOfAnyExcept((byte)0xEE) < 0, "the decoder wrote past the cluster");
    }

    /// <summary>(guest offset, entry, file offset of the entry) of every allocated data cluster, in guest order.</summary>
    private static IEnumerable<(long GuestOffset, ulong Entry, long EntryOffset)> DataEntries(byte[] image, Qcow2Header header)
    {
        int clusterBits = (int)header.ClusterBits;
        long l2Entries = header.L2Entries;
        for (long l1 = 0; l1 < header.L1Size; l1++)
        {
            ulong l2Offset = BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan((int)header.L1TableOffset + (int)l1 * 8)) & OffsetMask;
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

    private static void PatchEntry(MemoryStream image, long entryOffset, ulong entry)
    {
        long end = image.Position;
        Span<byte> bytes = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(bytes, entry);
        image.Position = entryOffset;
        image.Write(bytes);
        image.Position = end;
    }

    private static void AlignTo(MemoryStream stream, int alignment)
    {
        int pad = (int)((alignment - stream.Position % alignment) % alignment);
        stream.Write(new byte[pad]);
    }

    private static byte[][] SampleClusters(int clusterSize, Random random)
    {
        byte[] noise = new byte[clusterSize];
        random.NextBytes(noise);
        return new[]
        {
            TextCluster(clusterSize, random.Next(100000)),
            new byte[clusterSize],
            SmallAlphabetCluster(clusterSize, random),
            FarRepeats(clusterSize, 4097, random),
            FarRepeats(clusterSize, 30000, random),
            noise,
        };
    }

    private static byte[] TextCluster(int clusterSize, int firstLine)
    {
        var text = new StringBuilder();
        for (int i = firstLine; text.Length < clusterSize; i++)
        {
            text.Append(i.ToString("D7", System.Globalization.CultureInfo.InvariantCulture)).Append('\n');
        }
        return Encoding.ASCII.GetBytes(text.ToString(0, clusterSize));
    }

    private static byte[] SmallAlphabetCluster(int clusterSize, Random random)
    {
        byte[] cluster = new byte[clusterSize];
        for (int i = 0; i < clusterSize; i++)
        {
            cluster[i] = (byte)('a' + random.Next(4));
        }
        return cluster;
    }

    /// <summary>
    /// A small-alphabet random block repeated with a period beyond QEMU's 4 KiB window (capped at a quarter cluster):
    /// it compresses locally, and a 32 KiB-window encoder would also reach back too far for QEMU to read.
    /// </summary>
    private static byte[] FarRepeats(int clusterSize, int period, Random random)
    {
        period = Math.Min(period, clusterSize / 4);
        byte[] cluster = new byte[clusterSize];
        SmallAlphabetCluster(period, random).CopyTo(cluster, 0);
        for (int i = period; i < clusterSize; i++)
        {
            cluster[i] = cluster[i - period];
        }
        return cluster;
    }
}
