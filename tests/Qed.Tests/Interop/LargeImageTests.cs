using Qed.Format;
using Qed.Tests.Infrastructure;
using static Qed.Tests.Interop.Op;

namespace Qed.Tests.Interop;

/// <summary>
/// Data spread over several L2 tables, and 16 TiB sparse images written at low offsets and near their end
/// (iotest 105 style), in both directions: QEMU writes and we read, we write and QEMU reads.
/// </summary>
public sealed class LargeImageTests
{
    /// <summary>Runs the same sessions with both writers and checks every window both ways; returns nothing, asserts.</summary>
    private static void BothWays(string dir, long size, int clusterSize, int tableSize, IReadOnlyList<GuestOp[]> sessions, bool flatten)
    {
        var geometry = new QedGeometry(clusterSize, tableSize);
        var ops = sessions.SelectMany(s => s).ToList();
        var model = new DiskModel(size).Apply(ops);
        const string Theirs = "qemu.qed", Ours = "ours.qed";
        ImageWriter.Qemu.Create(dir, Theirs, size, clusterSize, tableSize);
        ImageWriter.Qed().Create(dir, Ours, size, clusterSize, tableSize);
        foreach (var session in sessions)
        {
            ImageWriter.Qemu.Session(dir, Theirs, session);
            ImageWriter.Qed().Session(dir, Ours, session);
        }

        var windows = GeometryMatrixTests.Windows(ops, geometry, size);
        windows.Add((size / 2 - 3 * clusterSize, 2L * clusterSize));
        QemuOracle.VerifyWindows(dir, Theirs, model, windows);
        QemuOracle.VerifyWindows(dir, Ours, model, windows);
        var (first, firstLength) = windows[0];
        InteropAssert.SameBytes(model.Read(first, firstLength), QemuOracle.ReadWindow(dir, Ours, first, firstLength), first, "QEMU's convert of a window of our image");
        using (var theirs = InteropAssert.OpenReadOnly(Path.Combine(dir, Theirs)))
        using (var ours = InteropAssert.OpenReadOnly(Path.Combine(dir, Ours)))
        {
            foreach (var (offset, length) in windows)
            {
                byte[] expected = model.Read(offset, length);
                InteropAssert.SameBytes(expected, InteropAssert.ReadOurs(theirs, offset, length, useAsync: false), offset, "our read of QEMU's image");
                InteropAssert.SameBytes(expected, InteropAssert.ReadOurs(ours, offset, length, useAsync: true), offset, "our read of our image");
            }
        }

        var ourCheck = QemuOracle.AssertClean(dir, Ours);
        Assert.Equal(QemuOracle.AssertClean(dir, Theirs).AllocatedClusters, ourCheck.AllocatedClusters);
        QemuOracle.AssertIdentical(dir, Theirs, Ours);
        if (flatten)
        {
            Assert.Equal(model.Sha256(), InteropAssert.ReadsLikeQemu(dir, Theirs));
            Assert.Equal(model.Sha256(), InteropAssert.QemuReadsLikeModel(dir, Ours, model));
        }
    }

    [Fact]
    public void OneWriteSpanningFourL2Tables()
    {
        // 4 KiB clusters, table_size 2: one L2 table maps 4 MiB, so a 10 MiB write touches four of them.
        using var tmp = new TempDirectory();
        GuestOp[][] sessions =
        [
            [W(0x5a, 3 * M + 100, 10 * M + 3)],
            [W(0x5b, 8 * M - 2 * K, 4 * K), Z(7 * M, 2 * M), W(0x5c, 12 * M - 1, 2), Z(20 * M, 4 * M)],
        ];
        BothWays(tmp.Path, 24 * M, 4096, 2, sessions, flatten: true);
        string ours = tmp.File("ours.qed");
        for (int i = 0; i < 4; i++)
        {
            Assert.NotEqual(0UL, OnDisk.L1(ours, i));
        }
        Assert.Equal(OnDisk.L1(tmp.File("qemu.qed"), 3), OnDisk.L1(ours, 3));
    }

    [Theory]
    [InlineData(4096, 2, 3 * M)] // crosses the 2 MiB mark (512 entries) inside one 4 MiB table
    [InlineData(65536, 4, 40 * M)] // crosses the 32 MiB mark (512 entries) inside one 2 GiB table
    public void OneAllocatingWriteIsOneContiguousRunLikeQemu(int clusterSize, int tableSize, long length)
    {
        // QED-FORMAT.md §1.6 and §5.8: the clusters one request allocates are contiguous in the file, and the new
        // L2 table comes after all of them. Both images must be byte-identical and unfragmented.
        using var tmp = new TempDirectory();
        GuestOp[] ops = [W(0x3c, 0, length)];
        ImageWriter.Qemu.Create(tmp.Path, "q.qed", 2 * length, clusterSize, tableSize);
        ImageWriter.Qemu.Session(tmp.Path, "q.qed", ops);
        ImageWriter.Qed().Create(tmp.Path, "o.qed", 2 * length, clusterSize, tableSize);
        ImageWriter.Qed().Session(tmp.Path, "o.qed", ops);

        QemuOracle.AssertIdentical(tmp.Path, "q.qed", "o.qed");
        var ours = QemuOracle.AssertClean(tmp.Path, "o.qed");
        Assert.Equal(0, QemuOracle.AssertClean(tmp.Path, "q.qed").FragmentedClusters);
        Assert.True(ours.FragmentedClusters == 0, $"our {length}-byte write was split: {ours.FragmentedClusters} fragmented clusters, QEMU has none; L1[0] = 0x{OnDisk.L1(tmp.File("o.qed"), 0):x}, QEMU's = 0x{OnDisk.L1(tmp.File("q.qed"), 0):x}");
        FileAssert.Same(tmp.File("q.qed"), tmp.File("o.qed"));
    }

    [Fact]
    public void WriteAcrossTheTwoGiBBoundaryOfDefaultTables()
    {
        using var tmp = new TempDirectory();
        GuestOp[][] sessions =
        [
            [W(0x21, 2 * G - 1 * M - 512, 3 * M), W(0x22, 0, 100), W(0x23, 4 * G + 12345, 70 * K)],
            [W(0x24, 2 * G - 4 * K, 8 * K), Z(2 * G, 128 * K)],
        ];
        BothWays(tmp.Path, 5 * G, 65536, 4, sessions, flatten: false);
        Assert.NotEqual(0UL, OnDisk.L1(tmp.File("ours.qed"), 2));
    }

    [Theory]
    [InlineData(4)]
    [InlineData(2)] // 16 TiB is exactly the maximum for 64 KiB clusters and table_size 2: the last L1 entry is used
    public void SixteenTiBSparseImageLowAndHighOffsets(int tableSize)
    {
        using var tmp = new TempDirectory();
        long size = 16 * T;
        GuestOp[][] sessions =
        [
            [W(0xa1, 0, 64 * K), W(0xa2, 1 * K + 7, 3 * K), W(0xa3, 14 * T, 64 * K), W(0xa4, size - 64 * K, 64 * K)],
            [
                W(0xa5, size - 128 * K - 512, 1 * K), W(0xa6, size - 512, 512), Z(size - 192 * K, 64 * K),
                W(0xa7, 8 * T - 100, 200), W(0xa8, 14 * T + 1000, 10), W(0xa9, size - 1, 1),
            ],
        ];
        BothWays(tmp.Path, size, 65536, tableSize, sessions, flatten: false);

        var geometry = new QedGeometry(65536, tableSize);
        int lastL1 = geometry.L1Index(size - 1);
        Assert.Equal(tableSize == 2 ? geometry.TableEntries - 1 : geometry.TableEntries / 4 - 1, lastL1);
        Assert.NotEqual(0UL, OnDisk.L1(tmp.File("ours.qed"), lastL1));
        Assert.Equal(OnDisk.L1(tmp.File("qemu.qed"), lastL1), OnDisk.L1(tmp.File("ours.qed"), lastL1));

        // qemu-io's own pattern check on our image, at both ends.
        QemuOracle.Io(tmp.Path, "ours.qed", "read -P 0xa1 0 1024", $"read -P 0xa4 {size - 64 * K} {64 * K - 512}", $"read -P 0xa6 {size - 512} 511",
            $"read -P 0xa9 {size - 1} 1", $"read -P 0 {15 * T} 65536");
    }
}
