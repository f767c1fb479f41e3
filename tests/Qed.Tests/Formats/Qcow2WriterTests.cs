using System.Buffers.Binary;
using Qed.Formats;
using Qed.Formats.Qcow2;
using Qed.Formats.Qcow2.Writer;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Formats;

/// <summary>
/// The write-once qcow2 target (<see cref="Qcow2TargetImage"/>) driven directly: seeded random writes, zero writes,
/// reads and flushes against a byte-array model, sync and async, with and without a backing file; then qemu-img checks
/// the image clean and reads exactly the model's bytes from it.
/// </summary>
public class Qcow2WriterTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Variants: -o options, a backing file or not, compression.</summary>
    public static TheoryData<string, bool, bool, bool> Variants()
    {
        var data = new TheoryData<string, bool, bool, bool>();
        (string Options, bool Backing, bool Compress)[] variants =
        [
            ("", false, false),
            ("compat=0.10", false, false),
            ("extended_l2=on", false, false),
            ("cluster_size=512", false, false),
            ("cluster_size=4k,refcount_bits=1", false, false),
            ("refcount_bits=64,cluster_size=2M", false, false),
            ("", true, false),
            ("compat=0.10", true, false),
            ("extended_l2=on", true, false),
            ("extended_l2=on,cluster_size=16k", true, false),
            ("", false, true),
            ("cluster_size=4k,refcount_bits=2", false, true),
            ("compression_type=zstd,extended_l2=on", true, true),
        ];
        foreach (var (options, backing, compress) in variants)
        {
            data.Add(options, backing, compress, false);
            data.Add(options, backing, compress, true);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public async Task Random_writes_zeroes_reads_and_flushes_match_a_byte_model(string options, bool withBacking, bool compress, bool useAsync)
    {
        var random = new Random(TestSeed.For($"{nameof(Random_writes_zeroes_reads_and_flushes_match_a_byte_model)}({options},{withBacking},{compress},{useAsync})"));
        long size = 4L * 1024 * 1024 + random.Next(0, 8192) * 512L;
        byte[] model = new byte[size];
        BlockDevice? backing = null;
        if (withBacking)
        {
            // Shorter than the image: beyond its end the image reads zeros.
            byte[] baseBytes = new byte[size - random.Next(0, 4096) * 512L];
            random.NextBytes(baseBytes);
            baseBytes.AsSpan(baseBytes.Length / 3, baseBytes.Length / 5).Clear();
            File.WriteAllBytes(_dir.File("base.raw"), baseBytes);
            baseBytes.CopyTo(model, 0);
            backing = ImageFormats.Raw.Open(_dir.File("base.raw"), new ImageOpenOptions { ReadOnly = true });
        }
        var settings = Settings(options, size, withBacking ? "base.raw" : null);
        int ops = 0, writes = 0, zeroes = 0, reads = 0, flushes = 0;
        var image = Qcow2TargetImage.Create(_dir.File("out.qcow2"), settings, backing, compress);
        await using (image)
        {
            for (; ops < 250; ops++)
            {
                long offset = random.Next(3) == 0 ? random.NextInt64(0, size / 512) * 512 : random.NextInt64(0, size);
                int length = (int)Math.Min(random.Next(4) == 0 ? random.Next(1, 600_000) : random.Next(1, 9000), size - offset);
                if (length == 0)
                {
                    continue;
                }
                switch (random.Next(10))
                {
                    case < 5:
                        byte[] bytes = new byte[length];
                        if (random.Next(2) == 0)
                        {
                            random.NextBytes(bytes);
                        }
                        else
                        {
                            bytes.AsSpan().Fill((byte)random.Next(256));
                        }
                        await Write(image, bytes, offset, useAsync);
                        bytes.CopyTo(model, offset);
                        writes++;
                        break;
                    case < 7:
                        var flags = random.Next(2) == 0 ? WriteZeroesFlags.MayUnmap : WriteZeroesFlags.None;
                        if (useAsync)
                        {
                            await image.WriteZeroesAsync(offset, length, flags, TestContext.Current.CancellationToken);
                        }
                        else
                        {
                            image.WriteZeroes(offset, length, flags);
                        }
                        model.AsSpan((int)offset, length).Clear();
                        zeroes++;
                        break;
                    case < 9:
                        byte[] read = new byte[length];
                        if (useAsync)
                        {
                            await image.ReadAsync(read, offset, TestContext.Current.CancellationToken);
                        }
                        else
                        {
                            image.Read(read, offset);
                        }
                        Assert.True(read.AsSpan().SequenceEqual(model.AsSpan((int)offset, length)), $"read of {length} bytes at {offset} differs from the model (op {ops})");
                        reads++;
                        break;
                    default:
                        // A flush in the middle leaves a complete image; later writes make its metadata garbage (refcount 0).
                        if (useAsync)
                        {
                            await image.FlushAsync(TestContext.Current.CancellationToken);
                        }
                        else
                        {
                            image.Flush();
                        }
                        flushes++;
                        break;
                }
            }
        }
        TestSeed.Report($"{ops} operations: {writes} writes, {zeroes} zero writes, {reads} reads, {flushes} flushes");
        Assert.Equal(250, ops);
        Assert.True(writes > 50 && zeroes > 10 && reads > 10, "every kind of operation ran");

        AssertClean("out.qcow2");
        File.WriteAllBytes(_dir.File("model.raw"), model);
        var compare = Tools.QemuImgRaw(_dir.Path, "compare", "-f", "raw", "-F", "qcow2", _dir.File("model.raw"), _dir.File("out.qcow2"));
        Assert.True(compare.ExitCode == 0, compare.ToString());
    }

    /// <summary>Sixteen writers released at once, each writing its own clusters: the allocation is shared and the image comes out clean and equal.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Concurrent_writers_leave_a_clean_image(bool compress)
    {
        var random = new Random(TestSeed.For($"{nameof(Concurrent_writers_leave_a_clean_image)}({compress})"));
        const int ClusterSize = 4096, Writers = 16, ClustersPerWriter = 64;
        long size = (long)ClusterSize * Writers * ClustersPerWriter * 2;
        byte[] model = new byte[size];
        // Cluster c belongs to writer c % Writers; only every other round of clusters is written.
        var plans = Enumerable.Range(0, Writers).Select(w => Enumerable.Range(0, ClustersPerWriter)
            .Select(i => (long)(i * 2 * Writers + w) * ClusterSize).ToArray()).ToArray();
        foreach (long offset in plans.SelectMany(p => p))
        {
            if (random.Next(2) == 0)
            {
                random.NextBytes(model.AsSpan((int)offset, ClusterSize));
            }
            else
            {
                model.AsSpan((int)offset, ClusterSize).Fill((byte)random.Next(1, 256));
            }
        }
        var image = Qcow2TargetImage.Create(_dir.File("out.qcow2"), Settings("cluster_size=4k", size, null), backing: null, compress);
        await using (image)
        {
            using var start = new Barrier(Writers);
            var tasks = plans.Select(plan => Task.Run(async () =>
            {
                start.SignalAndWait(TestContext.Current.CancellationToken);
                foreach (long offset in plan)
                {
                    await image.WriteAsync(model.AsMemory((int)offset, ClusterSize), offset, TestContext.Current.CancellationToken);
                }
            })).ToArray();
            await Task.WhenAll(tasks);
            Assert.All(tasks, t => Assert.True(t.IsCompletedSuccessfully));
            await image.FlushAsync(TestContext.Current.CancellationToken);
        }
        AssertClean("out.qcow2");
        File.WriteAllBytes(_dir.File("model.raw"), model);
        var compare = Tools.QemuImgRaw(_dir.Path, "compare", "-f", "raw", "-F", "qcow2", _dir.File("model.raw"), _dir.File("out.qcow2"));
        Assert.True(compare.ExitCode == 0, compare.ToString());
    }

    public static TheoryData<string> HeaderOptions => new()
    {
        "",
        "compat=0.10",
        "cluster_size=512,refcount_bits=1",
        "cluster_size=2M,refcount_bits=64,lazy_refcounts=on",
        "extended_l2=on,compression_type=zstd",
    };

    /// <summary>The header written parses back with the fields it was built from and passes QEMU's open rules 1-23.</summary>
    [Theory]
    [MemberData(nameof(HeaderOptions))]
    public void Header_parses_back_and_passes_the_open_rules(string options)
    {
        var settings = Settings(options, 1L << 30, "base.qcow2", "qcow2");
        var tables = new Qcow2HeaderWriter.Tables(L1Offset: 5 * settings.ClusterSize, RefcountTableOffset: 7 * settings.ClusterSize, RefcountTableClusters: 2);

        byte[] bytes = Qcow2HeaderWriter.Build(settings, tables);

        var header = Qcow2Header.Parse(bytes);
        header.Validate(forWriting: false);
        Assert.Equal((uint)settings.Version, header.Version);
        Assert.Equal((uint)settings.ClusterBits, header.ClusterBits);
        Assert.Equal((ulong)settings.Size, header.Size);
        Assert.Equal((uint)settings.L1Size, header.L1Size);
        Assert.Equal((ulong)tables.L1Offset, header.L1TableOffset);
        Assert.Equal((ulong)tables.RefcountTableOffset, header.RefcountTableOffset);
        Assert.Equal(2u, header.RefcountTableClusters);
        Assert.Equal((uint)settings.RefcountOrder, header.RefcountOrder);
        Assert.Equal(settings.ExtendedL2, header.ExtendedL2);
        Assert.Equal((byte)settings.CompressionType, header.CompressionType);
        Assert.Equal(settings.LazyRefcounts ? 1UL : 0UL, header.CompatibleFeatures);
        Assert.Equal("base.qcow2", System.Text.Encoding.UTF8.GetString(bytes.AsSpan((int)header.BackingFileOffset, (int)header.BackingFileSize)));
    }

    /// <summary>Refcounts narrower than a byte are packed least significant first (QCOW2.md §7: clusters 0-3 at refcount 1 with 1-bit refcounts give 0x0F).</summary>
    [Theory]
    [InlineData(0, new byte[] { 0x0F, 0x00 })]
    [InlineData(1, new byte[] { 0x55, 0x00 })]
    [InlineData(2, new byte[] { 0x11, 0x11 })]
    [InlineData(3, new byte[] { 0x01, 0x01 })]
    [InlineData(4, new byte[] { 0x00, 0x01 })]
    public void Refcounts_are_packed_as_QEMU_packs_them(int refcountOrder, byte[] expectedStart)
    {
        byte[] block = new byte[64];
        for (int cluster = 0; cluster < 4; cluster++)
        {
            Qcow2Metadata.WriteRefcount(block, cluster, 1, refcountOrder);
        }
        Assert.Equal(expectedStart, block[..2]);
        // Wide ones are big-endian.
        Qcow2Metadata.WriteRefcount(block, 3, 0x0102, 4);
        Assert.Equal(0x0102, BinaryPrimitives.ReadUInt16BigEndian(block.AsSpan(6)));
    }

    /// <summary>
    /// The header is written last: a flush that fails at any of its writes leaves a first image that is no qcow2 image at
    /// all (no magic), and a later image that is still the previous flush's clean image; the next flush (here the close)
    /// writes everything again.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_failed_flush_never_leaves_a_wrong_image(bool secondFlush)
    {
        int failures = 0;
        for (int at = 1; ; at++)
        {
            var file = new FailingFileAccessor(new MemoryFileAccessor(_dir.File("mem.qcow2"), []));
            var image = Qcow2TargetImage.Create(file, Settings("cluster_size=4k", 8L << 20, null), backing: null, compress: false);
            image.Write(Filled(64 * 1024, 0x11), 0);
            if (secondFlush)
            {
                image.Flush();
                image.Write(Filled(8192, 0x22), 5L << 20);
                image.Write(Filled(4096, 0x33), 0);
            }
            file.FailAt = file.Writes + at;
            var e = Record.Exception(() => image.Flush());
            if (e is null)
            {
                // Every write of the flush has been failed once: the last one was the header.
                Assert.True(failures >= 4, $"only {failures} writes in a flush");
                image.Dispose();
                break;
            }
            failures++;
            Assert.IsType<IOException>(e);
            byte[] bytes = file.Inner.ToArray();
            if (!secondFlush)
            {
                Assert.False(Qcow2Header.IsQcow2(bytes), $"a flush that failed at its write {at} left a qcow2 header");
            }
            else
            {
                File.WriteAllBytes(_dir.File($"after-{at}.qcow2"), bytes);
                AssertClean($"after-{at}.qcow2");
            }
            // The close flushes again (the fault fired once) and leaves the complete image.
            image.Dispose();
            File.WriteAllBytes(_dir.File("closed.qcow2"), file.Inner.ToArray());
            AssertClean("closed.qcow2");
        }
        TestSeed.Report($"{failures} failing writes tried");
    }

    [Fact]
    public void Qcow2_is_created_with_qemu_img_s_options_in_qemu_img_s_order()
    {
        var qcow2 = ImageFormats.Qcow2;
        Assert.True(qcow2.CanCreate && qcow2.SupportsBackingFile && qcow2.GrowsFile);
        // Written only as a new image: an existing qcow2 never opens writable.
        Assert.False(qcow2.CanWrite);
        Assert.Equal(["cluster_size", "extended_l2", "preallocation", "compression_type", "size", "compat", "backing_file", "backing_fmt", "lazy_refcounts", "refcount_bits"],
            qcow2.CreateOptions.Select(o => o.Name));
    }

    private static async ValueTask Write(BlockDevice image, byte[] bytes, long offset, bool useAsync)
    {
        if (useAsync)
        {
            await image.WriteAsync(bytes, offset, TestContext.Current.CancellationToken);
        }
        else
        {
            image.Write(bytes, offset);
        }
    }

    private static byte[] Filled(int length, byte value)
    {
        byte[] bytes = new byte[length];
        bytes.AsSpan().Fill(value);
        return bytes;
    }

    /// <summary>Fails the write numbered <see cref="FailAt"/> (1-based, counted over the accessor's life) once.</summary>
    private sealed class FailingFileAccessor(MemoryFileAccessor inner) : FileAccessor
    {
        public MemoryFileAccessor Inner => inner;

        public int Writes { get; private set; }

        public int FailAt { get; set; } = int.MaxValue;

        public override string Path => inner.Path;

        public override bool IsReadOnly => false;

        public override long GetLength() => inner.GetLength();

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken) =>
            inner.ReadAsync(buffer, offset, useAsync, cancellationToken);

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, long offset, bool useAsync, CancellationToken cancellationToken) =>
            ++Writes == FailAt ? throw new IOException($"injected failure of write {Writes}") : inner.WriteAsync(buffer, offset, useAsync, cancellationToken);

        public override ValueTask FlushAsync(bool useAsync, CancellationToken cancellationToken) => inner.FlushAsync(useAsync, cancellationToken);

        public override void SetLength(long length) => inner.SetLength(length);

        public override void Dispose() => inner.Dispose();
    }

    private static Qcow2CreateSettings Settings(string options, long size, string? backingFile, string backingFormat = "raw")
    {
        var numbers = new Dictionary<string, long>();
        var texts = new Dictionary<string, string>();
        foreach (string pair in options.Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var (key, value) = (pair.Split('=')[0], pair.Split('=')[1]);
            if (key is "cluster_size" or "refcount_bits")
            {
                numbers[key] = value.EndsWith('k') ? long.Parse(value[..^1]) * 1024 : value.EndsWith('M') ? long.Parse(value[..^1]) << 20 : long.Parse(value);
            }
            else
            {
                texts[key] = value;
            }
        }
        return Qcow2CreateSettings.From(new ImageCreateOptions
        {
            Size = size,
            BackingFile = backingFile,
            BackingFormat = backingFile is null ? null : backingFormat,
            Settings = numbers,
            TextSettings = texts,
        });
    }

    private void AssertClean(string file)
    {
        var check = Tools.QemuImgRaw(_dir.Path, "check", "--output=json", _dir.File(file));
        var report = CheckReport.From(check);
        Assert.True(check.ExitCode == 0 && report is { Corruptions: 0, Leaks: 0, CheckErrors: 0 }, check.ToString());
    }
}
