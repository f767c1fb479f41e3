using Qed.Format;
using Qed.Image;
using Qed.Tests.Infrastructure;
using static Qed.Tests.Interop.Op;

namespace Qed.Tests.Interop;

/// <summary>
/// Three-level chains with mixed geometry: a raw base of 3 000 000 random bytes (shorter than the layers
/// above, not sector aligned), a 4 MiB QED middle layer with 4 KiB clusters, and a 5 MiB QED top with 16 KiB
/// clusters and table_size 2. The lower two layers and the top are written by QEMU or by us in every
/// combination; QEMU and we must read the same disk, which must equal the model.
/// </summary>
public sealed class BackingChainTests
{
    private const long BaseLength = 3_000_000;
    private const long MidSize = 4 * M;
    private const long TopSize = 5 * M;

    // Partial writes into zero clusters are avoided: QEMU fills their rest from the backing file (§5.5, F11).
    private static readonly GuestOp[] s_midFirst =
    [
        W(0x31, 64 * K + 100, 10 * K), Z(128 * K, 64 * K), Z(300 * K + 512, 5000),
        W(0x32, 2_999_000, 4000), W(0x33, 3_500_000, 8 * K),
    ];

    private static readonly GuestOp[] s_midSecond = [W(0x34, 1 * M - 2 * K, 4 * K), Z(2 * M, 8 * K), W(0x35, 132 * K, 4 * K)];

    private static readonly GuestOp[] s_top =
    [
        W(0x41, 60 * K, 10 * K), W(0x42, 130 * K, 2 * K), W(0x43, 2_998_200, 1000), W(0x44, MidSize - 1 * K, 2 * K),
        Z(TopSize - 32 * K, 32 * K), Z(96 * K, 16 * K), W(0x45, 1 * M + 5, 1), W(0x46, 3_500_000 - 100, 300),
    ];

    internal static byte[] RandomBytes(int seed, long length)
    {
        byte[] bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private static DiskModel Model() =>
        new DiskModel(TopSize, new DiskModel(MidSize, new BytesView(RandomBytes(3, BaseLength))).Apply(s_midFirst).Apply(s_midSecond)).Apply(s_top);

    private static void Build(string dir, ImageWriter lower, ImageWriter upper)
    {
        File.WriteAllBytes(Path.Combine(dir, "base.raw"), RandomBytes(3, BaseLength));
        lower.Create(dir, "mid.qed", MidSize, clusterSize: 4096, tableSize: 4, backing: "base.raw", backingFormat: "raw");
        lower.Session(dir, "mid.qed", s_midFirst);
        lower.Session(dir, "mid.qed", s_midSecond);
        upper.Create(dir, "top.qed", TopSize, clusterSize: 16384, tableSize: 2, backing: "mid.qed", backingFormat: "qed");
        upper.Session(dir, "top.qed", s_top);
    }

    private static ImageWriter Writer(string name) => name == "qemu" ? ImageWriter.Qemu : ImageWriter.Qed();

    [Theory]
    [InlineData("qemu", "qemu")]
    [InlineData("qed", "qed")]
    [InlineData("qemu", "qed")]
    [InlineData("qed", "qemu")]
    public void ThreeLevelChainReadsAgree(string lower, string upper)
    {
        using var tmp = new TempDirectory();
        Build(tmp.Path, Writer(lower), Writer(upper));
        var model = Model();

        Assert.Equal(QedFeatures.BackingFile | QedFeatures.BackingFormatNoProbe, OnDisk.Header(tmp.File("mid.qed")).Features);
        Assert.Equal(QedFeatures.BackingFile, OnDisk.Header(tmp.File("top.qed")).Features);
        QemuOracle.AssertClean(tmp.Path, "mid.qed");
        QemuOracle.AssertClean(tmp.Path, "top.qed");

        // Our whole-disk read equals qemu-img convert's (sync and async), and both equal the model.
        Assert.Equal(model.Sha256(), InteropAssert.ReadsLikeQemu(tmp.Path, "top.qed"));
        using (var probed = DiskImage.Open(tmp.File("top.qed"), null, new ImageOpenOptions { ReadOnly = true }))
        {
            InteropAssert.ReadsLikeModel(probed, model, $"top ({upper} over {lower})");
            Assert.Equal("qed", probed.Backing!.FormatName);
            Assert.Equal("raw", probed.Backing!.Backing!.FormatName);
        }
        StatusAssert.LikeQemuMap(tmp.Path, "top.qed");
        StatusAssert.LikeQemuMap(tmp.Path, "mid.qed");
    }

    [Fact]
    public void ChainsWrittenByQemuAndByUsAreIdentical()
    {
        using var tmp = new TempDirectory();
        string q = Directory.CreateDirectory(tmp.File("qemu")).FullName;
        string o = Directory.CreateDirectory(tmp.File("qed")).FullName;
        Build(q, ImageWriter.Qemu, ImageWriter.Qemu);
        Build(o, ImageWriter.Qed(useAsync: true), ImageWriter.Qed(useAsync: false));
        foreach (string layer in new[] { "mid.qed", "top.qed" })
        {
            QemuOracle.AssertIdentical(tmp.Path, Path.Combine(q, layer), Path.Combine(o, layer));
            FileAssert.Same(Path.Combine(q, layer), Path.Combine(o, layer));
        }
    }
}
