using Qed.Copy;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Fuzz;
using Qed.Tests.Image;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;
using static Qed.Tests.Extents.ExtentTestSupport;

namespace Qed.Tests.Extents;

/// <summary>The library's sparse copier: copies that qemu-img compare finds identical and qemu-img check clean, and work that grows with the data only.</summary>
public class SparseCopierTests
{
    /// <summary>Copies <paramref name="source"/> (a chain) into a new image of <paramref name="format"/> with the library alone.</summary>
    private static async Task Copy(TempDirectory dir, string source, string sourceFormat, string target, string format, bool useAsync)
    {
        await using var from = await DiskImage.OpenAsync(dir.File(source), sourceFormat, new ImageOpenOptions { ReadOnly = true });
        BlockDevice to;
        int granule = 4096;
        if (format == "qed")
        {
            QedImage.Create(dir.File(target), new QedCreateOptions { Size = from.Size, ClusterSize = 16384 });
            to = QedImage.Open(dir.File(target));
            granule = 16384;
        }
        else
        {
            to = RawImage.Create(dir.File(target), from.Size);
        }
        await using (to)
        {
            var copier = new SparseCopier(from, to, from.Size, granule);
            long last = 0;
            void Progress(long done, long total)
            {
                Assert.True(done >= last && total == from.Size, $"progress {done}/{total} after {last}");
                last = done;
            }
            if (useAsync)
            {
                await copier.CopyAsync(Progress);
            }
            else
            {
                copier.Copy(Progress);
            }
            Assert.Equal(from.Size, copier.Done);
            Assert.Equal(from.Size, last);
        }
    }

    public static TheoryData<string, bool> FormatsAndModes() => new() { { "qed", false }, { "qed", true }, { "raw", false }, { "raw", true } };

    [Theory]
    [MemberData(nameof(FormatsAndModes))]
    public async Task A_chain_with_zero_clusters_and_holes_copies_identically(string format, bool useAsync)
    {
        using var dir = new TempDirectory();
        SparseRaw(dir.File("base.raw"), 3 * MiB, (0, 131072, 0x31), (2 * MiB, 65536, 0x32), (2 * MiB + 131072, 4096, 0));
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-b", "base.raw", "-F", "raw", "mid.qed", "6M");
        Tools.QemuIo(dir.Path, "qed", "mid.qed", "write -P 0x41 64k 64k", "write -z 0 16k", "write -z 2M 128k", "write -P 0x42 4M 64k", "write -P 0 4352k 64k");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=4096", "-b", "mid.qed", "-F", "qed", "top.qed", "8M");
        Tools.QemuIo(dir.Path, "qed", "top.qed", "write -P 0x51 2M 4k", "write -z 4M 64k", "write -P 0x52 7M 4k", "write -P 0x53 4100k 8k");

        await Copy(dir, "top.qed", "qed", "out." + format, format, useAsync);

        QemuOracle.AssertIdentical(dir.Path, "top.qed", "out." + format, "qed", format);
        if (format == "qed")
        {
            QemuOracle.AssertClean(dir.Path, "out.qed");
            // Zero data (written as zeros, zero clusters, holes, past the raw file's end) left no clusters: only the 16 KiB
            // granules holding non-zero bytes, [16k, 128k) from base and mid, and one each at 2M, 4100k and 7M from top.
            await using var copy = await DiskImage.OpenAsync(dir.File("out.qed"), "qed", new ImageOpenOptions { ReadOnly = true });
            long data = (await Map(copy, useAsync)).Where(e => e.IsData).Sum(e => e.Length);
            Assert.Equal(7 * 16384 + 3 * 16384, data);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_sparse_raw_file_copies_into_qed_identically(bool useAsync)
    {
        using var dir = new TempDirectory();
        SparseRaw(dir.File("src.raw"), 32 * MiB, (0, 4096, 0x11), (3 * MiB + 512, 100_000, 0x12), (31 * MiB, (int)MiB, 0x13));
        await Copy(dir, "src.raw", "raw", "out.qed", "qed", useAsync);
        QemuOracle.AssertIdentical(dir.Path, "src.raw", "out.qed", "raw", "qed");
        QemuOracle.AssertClean(dir.Path, "out.qed");
    }

    /// <summary>A 16 TiB source holding a few MiB: the copy asks for a handful of statuses and reads only the data.</summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_16_TiB_sparse_raw_source_costs_work_in_proportion_to_its_data(bool useAsync)
    {
        using var dir = new TempDirectory();
        const long Size = 16L << 40;
        SparseRaw(dir.File("big.raw"), Size, (0, 1 << 20, 0x11), (5L << 40, 1 << 20, 0x22), (Size - (1L << 20), 1 << 20, (byte)0x33));
        await using var raw = RawImage.Open(dir.File("big.raw"), readOnly: true);
        var source = new CountingDevice(raw);
        var discard = new DiscardingFileAccessor("out.raw", Size);
        await using var target = new RawImage(discard);
        var copier = new SparseCopier(source, target, Size);
        if (useAsync)
        {
            await copier.CopyAsync();
        }
        else
        {
            copier.Copy();
        }
        TestSeed.Report($"16 TiB sparse raw: {source.StatusCalls} status requests, {source.Reads} reads of {source.BytesRead} bytes, {discard.Written} bytes written");
        Assert.InRange(source.StatusCalls, 5, 16);
        Assert.Equal(3L << 20, source.BytesRead);
        Assert.InRange(source.Reads, 3, 6);
        Assert.Equal(3L << 20, discard.Written);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_16_TiB_qed_source_reads_only_its_data(bool useAsync)
    {
        using var dir = new TempDirectory();
        const long Size = 16L << 40;
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "big.qed", "16T");
        Tools.QemuIo(dir.Path, "qed", "big.qed", "write -P 0x11 0 1M", "write -P 0x22 5T 1M", "write -P 0x33 16383G 1M");
        await using var image = await Img.Open(dir.File("big.qed"), useAsync, readOnly: true);
        var source = new CountingDevice(image);
        var discard = new DiscardingFileAccessor("out.raw", Size);
        await using var target = new RawImage(discard);
        var copier = new SparseCopier(source, target, Size, 65536);
        if (useAsync)
        {
            await copier.CopyAsync();
        }
        else
        {
            copier.Copy();
        }
        TestSeed.Report($"16 TiB sparse qed: {source.StatusCalls} status requests, {source.Reads} reads of {source.BytesRead} bytes, {discard.Written} bytes written");
        // Absent L2 tables answer for the whole run of them in one step; each of the 3 tables holding data answers slice by
        // slice (64 slices of 4 KiB in a 256 KiB table). Without the first, 16 TiB took 524,288 steps (one per slice span).
        const int SlicesPerTable = 65536 * 4 / 4096;
        Assert.InRange(source.StatusCalls, 5, 3 * (SlicesPerTable + 2));
        Assert.Equal(3L << 20, source.BytesRead);
        Assert.InRange(source.Reads, 3, 6);
        Assert.Equal(3L << 20, discard.Written);
    }
}
