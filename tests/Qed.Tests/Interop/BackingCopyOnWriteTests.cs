using Qed.Tests.Infrastructure;
using static Qed.Tests.Interop.Op;

namespace Qed.Tests.Interop;

/// <summary>
/// Copy-on-write of partial clusters, byte-exact: the untouched parts of a newly allocated cluster must hold what
/// lay beneath (iotests 027 and 037), including a raw backing file that ends inside a cluster, not even on a
/// sector boundary (F12 style). Backing files hold random bytes so that a part copied from the wrong offset shows.
/// Each scenario is written by QEMU and by us; both images must read as the model, for QEMU and for us, check
/// clean, compare identical and be laid out identically.
/// </summary>
public sealed class BackingCopyOnWriteTests
{
    private const long ShortBackingLength = 1_000_000;

    /// <summary>Writes the scenario with both writers into <c>dir/qemu</c> and <c>dir/qed</c> and checks everything.</summary>
    private static void BothWriters(string root, Action<ImageWriter, string> build, string image, DiskModel model)
    {
        string q = Directory.CreateDirectory(Path.Combine(root, "qemu")).FullName;
        string o = Directory.CreateDirectory(Path.Combine(root, "qed")).FullName;
        build(ImageWriter.Qemu, q);
        build(ImageWriter.Qed(), o);

        Assert.Equal(model.Sha256(), InteropAssert.ReadsLikeQemu(q, image));
        Assert.Equal(model.Sha256(), InteropAssert.ReadsLikeQemu(o, image));
        using (var ours = InteropAssert.OpenReadOnly(Path.Combine(o, image)))
        {
            InteropAssert.ReadsLikeModel(ours, model, "our image");
        }
        QemuOracle.AssertClean(o, image);
        QemuOracle.AssertIdentical(root, Path.Combine(q, image), Path.Combine(o, image));
        FileAssert.Same(Path.Combine(q, image), Path.Combine(o, image));
    }

    public static TheoryData<int, int> ShortBackingCases()
    {
        var data = new TheoryData<int, int>();
        foreach (int clusterSize in new[] { 4096, 65536 })
        {
            for (int scenario = 0; scenario < 6; scenario++)
            {
                data.Add(clusterSize, scenario);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(ShortBackingCases))]
    public void WritesAroundTheEndOfAShortUnalignedRawBacking(int clusterSize, int scenario)
    {
        // The backing file ends at byte 1 000 000, inside cluster c0; the first write allocates that cluster in a
        // different way per scenario, the next ones write in place and just after it.
        long c0 = ShortBackingLength / clusterSize * clusterSize;
        GuestOp first = scenario switch
        {
            0 => W(0x51, 999_000, 2000), // straddles the end
            1 => W(0x52, c0 + 10, 100), // before the end, inside the last cluster
            2 => W(0x53, 1_000_100, 50), // after the end, inside the same cluster
            3 => Z(999_990, 20), // unaligned write-zeroes straddling the end
            4 => W(0x54, c0, 2L * clusterSize), // whole clusters
            _ => W(0x55, 999_999, 2), // two bytes, one on each side, inside one sector
        };
        GuestOp[] ops = [first, W(0x5f, 999_997, 6), W(0x5e, c0 + clusterSize + 7, 9)];
        byte[] backing = BackingChainTests.RandomBytes(12, ShortBackingLength);
        var model = new DiskModel(4 * M, new BytesView(backing)).Apply(ops);

        using var tmp = new TempDirectory();
        BothWriters(tmp.Path, (w, dir) =>
        {
            File.WriteAllBytes(Path.Combine(dir, "short.raw"), backing);
            w.Create(dir, "over.qed", 4 * M, clusterSize, tableSize: 4, backing: "short.raw", backingFormat: "raw");
            w.Session(dir, "over.qed", ops[..1]);
            w.Session(dir, "over.qed", ops[1..]);
        }, "over.qed", model);
    }

    [Fact]
    public void Iotest027SubClusterWriteZeroesTheRestOfTheCluster()
    {
        using var tmp = new TempDirectory();
        GuestOp[] ops = [W(0x27, 1 * K, 2 * K)];
        BothWriters(tmp.Path, (w, dir) =>
        {
            w.Create(dir, "t027.qed", 8 * M);
            w.Session(dir, "t027.qed", ops);
        }, "t027.qed", new DiskModel(8 * M).Apply(ops));
        Assert.Equal(0x50000UL, OnDisk.L2(tmp.File("qed/t027.qed"), 0));
    }

    [Theory]
    [InlineData("raw")]
    [InlineData("qed")]
    public void Iotest037PartialClusterCopyOnWriteIsByteExact(string baseFormat)
    {
        GuestOp[] ops =
        [
            W(0x01, 0, 512), W(0x02, 4 * K + 1536, 512), W(0x03, 8 * K + 3584, 512), W(0x04, 12 * K + 100, 7),
            W(0x05, 16 * K + 3584, 1024), W(0x06, 24 * K + 2048, 4 * K), W(0x07, 32 * K + 512, 9 * K),
            W(0x08, 4 * K + 1000, 100), W(0x09, 64 * K - 1, 2), W(0x0a, 1 * M - 3, 3),
        ];
        byte[] content = BackingChainTests.RandomBytes(37, 1 * M);
        var model = new DiskModel(1 * M, new BytesView(content)).Apply(ops);
        string baseName = "base." + baseFormat;

        using var tmp = new TempDirectory();
        BothWriters(tmp.Path, (w, dir) =>
        {
            File.WriteAllBytes(Path.Combine(dir, "base.raw"), content);
            if (baseFormat == "qed")
            {
                // A QED base written by the same writer: QEMU converts, we write the bytes in odd-sized pieces.
                if (w.IsQemu)
                {
                    Tools.QemuImg(dir, "convert", "-f", "raw", "-O", "qed", "-o", "cluster_size=4096", "base.raw", baseName);
                }
                else
                {
                    w.Create(dir, baseName, 1 * M, clusterSize: 4096);
                    using var image = Qed.Image.QedImage.Open(Path.Combine(dir, baseName));
                    for (long offset = 0; offset < content.Length; offset += 99_999)
                    {
                        int n = (int)Math.Min(99_999, content.Length - offset);
                        image.Write(content.AsMemory((int)offset, n), offset);
                    }
                }
            }
            w.Create(dir, "t037.qed", 1 * M, clusterSize: 4096, tableSize: 4, backing: baseName, backingFormat: baseFormat);
            w.Session(dir, "t037.qed", ops);
        }, "t037.qed", model);
    }
}
