using Qed.IO;
using Qed.Tests.Infrastructure;
using static Qed.Tests.Interop.Op;

namespace Qed.Tests.Interop;

/// <summary>
/// Zero clusters across the two implementations: QEMU's <c>write -z</c> read by us, and our write-zeroes read by
/// QEMU, over a backing file (where aligned zero writes must become zero markers that hide the backing data)
/// and without one.
/// </summary>
public sealed class ZeroClusterTests
{
    private const long Size = 4 * M;

    // Aligned over unallocated (markers), over allocated (real zeros, stays allocated), unaligned (real zero
    // bytes through the allocating path), partly aligned, then a whole-cluster write over a zero cluster.
    private static readonly GuestOp[] s_ops =
    [
        Z(0, 128 * K), W(0x61, 256 * K, 64 * K), Z(256 * K, 64 * K), Z(1 * M + 4 * K, 8 * K),
        Z(2 * M - 32 * K, 96 * K), Z(3 * M, 64 * K), W(0x62, 3 * M, 64 * K), Z(Size - 64 * K, 64 * K),
    ];

    private static byte[] Backing() => BackingChainTests.RandomBytes(9, Size);

    private static void BuildOverBacking(ImageWriter w, string dir)
    {
        File.WriteAllBytes(Path.Combine(dir, "base.raw"), Backing());
        w.Create(dir, "zero.qed", null, backing: "base.raw", backingFormat: "raw");
        w.Session(dir, "zero.qed", s_ops[..4]);
        w.Session(dir, "zero.qed", s_ops[4..]);
    }

    private static void AssertEntries(string file)
    {
        Assert.Equal(1UL, OnDisk.L2(file, 0));
        Assert.Equal(1UL, OnDisk.L2(file, 64 * K));
        Assert.True(OnDisk.L2(file, 256 * K) > 1, "write-zeroes must leave an allocated cluster allocated");
        Assert.True(OnDisk.L2(file, 1 * M) > 1, "an unaligned zero write allocates");
        Assert.True(OnDisk.L2(file, 2 * M - 64 * K) > 1, "a partial cluster of zeros is real data");
        Assert.Equal(1UL, OnDisk.L2(file, 2 * M));
        Assert.True(OnDisk.L2(file, 3 * M) > 1, "a write over a zero cluster allocates it");
        Assert.Equal(1UL, OnDisk.L2(file, Size - 64 * K));
        Assert.Equal(0UL, OnDisk.L2(file, 128 * K));
    }

    [Fact]
    public void QemuZeroClustersOverBackingReadByUs()
    {
        using var tmp = new TempDirectory();
        BuildOverBacking(ImageWriter.Qemu, tmp.Path);
        string file = tmp.File("zero.qed");
        AssertEntries(file);
        var model = new DiskModel(Size, new BytesView(Backing())).Apply(s_ops);
        Assert.Equal(model.Sha256(), InteropAssert.ReadsLikeQemu(tmp.Path, "zero.qed"));
        StatusAssert.LikeQemuMap(tmp.Path, "zero.qed");
        using var device = InteropAssert.OpenReadOnly(file);
        Assert.Equal(new BlockStatus(0, 128 * K, BlockState.Zero, -1), device.GetStatus(0, Size));
        Assert.Equal(BlockState.Unallocated, device.GetStatus(128 * K, 64 * K).State);
    }

    [Fact]
    public void OurZeroClustersOverBackingReadByQemu()
    {
        using var tmp = new TempDirectory();
        string q = Directory.CreateDirectory(tmp.File("qemu")).FullName;
        string o = Directory.CreateDirectory(tmp.File("qed")).FullName;
        BuildOverBacking(ImageWriter.Qemu, q);
        BuildOverBacking(ImageWriter.Qed(), o);
        string file = Path.Combine(o, "zero.qed");
        AssertEntries(file);

        var model = new DiskModel(Size, new BytesView(Backing())).Apply(s_ops);
        Assert.Equal(model.Sha256(), InteropAssert.QemuReadsLikeModel(o, "zero.qed", model));
        QemuOracle.AssertClean(o, "zero.qed");
        QemuOracle.AssertIdentical(tmp.Path, Path.Combine(q, "zero.qed"), file);
        FileAssert.Same(Path.Combine(q, "zero.qed"), file);

        // qemu-img map sees our aligned zero clusters as zero clusters of the top layer, hiding the backing data.
        var map = QemuOracle.Map(o, "zero.qed");
        foreach (var (start, length) in new[] { (0L, 128 * K), (2 * M, 64 * K), (Size - 64 * K, 64 * K) })
        {
            var extents = QemuOracle.Overlapping(map, start, start + length).ToList();
            Assert.All(extents, e => Assert.True(e is { Depth: 0, Present: true, Zero: true, Data: false }, $"{e} at 0x{start:x}"));
            Assert.True(extents.Count > 0 && extents[0].Start <= start && extents[^1].End >= start + length);
        }
        Assert.All(QemuOracle.Overlapping(map, 256 * K, 320 * K), e => Assert.True(e is { Depth: 0, Data: true }, e.ToString()));
        Assert.All(QemuOracle.Overlapping(map, 128 * K, 256 * K), e => Assert.True(e is { Depth: 1, Data: true }, e.ToString()));
        QemuOracle.Io(o, "zero.qed", "read -P 0 0 131072", "read -P 0 256k 64k", "read -P 0 2M 64k", "read -P 0x62 3M 64k");
        StatusAssert.LikeQemuMap(o, "zero.qed");
    }

    [Fact]
    public void ZeroClustersAcrossAnL2BoundaryBothWays()
    {
        // 4 KiB clusters, table_size 2: one L2 table maps 4 MiB; the zero write covers the end of table 0 and the
        // start of table 1, which does not exist yet and is created full of markers.
        using var tmp = new TempDirectory();
        string q = Directory.CreateDirectory(tmp.File("qemu")).FullName;
        string o = Directory.CreateDirectory(tmp.File("qed")).FullName;
        byte[] backing = BackingChainTests.RandomBytes(44, 8 * M);
        GuestOp[] ops = [W(0x71, 0, 4 * K), Z(4 * M - 8 * K, 16 * K), W(0x72, 4 * M + 8 * K, 4 * K)];
        foreach (var (w, dir) in new[] { (ImageWriter.Qemu, q), (ImageWriter.Qed(), o) })
        {
            File.WriteAllBytes(Path.Combine(dir, "base.raw"), backing);
            w.Create(dir, "x.qed", null, clusterSize: 4096, tableSize: 2, backing: "base.raw", backingFormat: "raw");
            w.Session(dir, "x.qed", ops);
            string file = Path.Combine(dir, "x.qed");
            foreach (long offset in new[] { 4 * M - 8 * K, 4 * M - 4 * K, 4 * M, 4 * M + 4 * K })
            {
                Assert.Equal(1UL, OnDisk.L2(file, offset));
            }
        }
        var model = new DiskModel(8 * M, new BytesView(backing)).Apply(ops);
        Assert.Equal(model.Sha256(), InteropAssert.ReadsLikeQemu(q, "x.qed"));
        Assert.Equal(model.Sha256(), InteropAssert.QemuReadsLikeModel(o, "x.qed", model));
        QemuOracle.AssertClean(o, "x.qed");
        QemuOracle.AssertIdentical(tmp.Path, Path.Combine(q, "x.qed"), Path.Combine(o, "x.qed"));
        FileAssert.Same(Path.Combine(q, "x.qed"), Path.Combine(o, "x.qed"));
        StatusAssert.LikeQemuMap(o, "x.qed");
    }

    [Fact]
    public void WriteZeroesWithoutBackingFileBothWays()
    {
        // Without a backing file QEMU still allocates an L2 table full of markers for an aligned zero write on
        // an empty range (QED-FORMAT.md §5.5, §12.3 #18); unallocated space already reads as zeros, so our
        // engine does not have to. Either way both read zeros and QEMU's tools see the same disk.
        using var tmp = new TempDirectory();
        GuestOp[] ops = [Z(0, 1 * M), W(0x73, 2 * M, 64 * K), Z(2 * M, 64 * K), Z(3 * M + 100, 5000)];
        ImageWriter.Qemu.Create(tmp.Path, "q.qed", Size);
        ImageWriter.Qemu.Session(tmp.Path, "q.qed", ops);
        ImageWriter.Qed().Create(tmp.Path, "o.qed", Size);
        ImageWriter.Qed().Session(tmp.Path, "o.qed", ops);
        for (long offset = 0; offset < 1 * M; offset += 64 * K)
        {
            Assert.Equal(1UL, OnDisk.L2(tmp.File("q.qed"), offset));
        }

        var model = new DiskModel(Size).Apply(ops);
        Assert.Equal(model.Sha256(), InteropAssert.ReadsLikeQemu(tmp.Path, "q.qed"));
        Assert.Equal(model.Sha256(), InteropAssert.QemuReadsLikeModel(tmp.Path, "o.qed", model));
        StatusAssert.LikeQemuMap(tmp.Path, "q.qed");
        StatusAssert.LikeQemuMap(tmp.Path, "o.qed");
        QemuOracle.AssertClean(tmp.Path, "o.qed");
        QemuOracle.AssertIdentical(tmp.Path, "q.qed", "o.qed");
        Assert.Equal(QemuOracle.Check(tmp.Path, "q.qed").AllocatedClusters, QemuOracle.Check(tmp.Path, "o.qed").AllocatedClusters);
        Assert.All(QemuOracle.Overlapping(QemuOracle.Map(tmp.Path, "o.qed"), 0, 1 * M), e => Assert.True(e.Zero && !e.Data, e.ToString()));
    }
}
