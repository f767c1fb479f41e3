using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Fuzz;

/// <summary>
/// Six real images to mutate, made by qemu-img/qemu-io and by our engine, small enough to fuzz fast: 4 KiB and 64 KiB
/// clusters, tables of 1, 2, 4 and 16 clusters, no backing file, a raw backing file and a QED one.
/// </summary>
internal static class FuzzSeeds
{
    /// <summary>Builds the seed images in <paramref name="dir"/> (with a raw file some of them name as backing) and returns their bytes.</summary>
    public static List<(string Name, byte[] Bytes)> Build(TempDirectory dir)
    {
        var seeds = new List<(string, byte[])>();
        File.WriteAllBytes(dir.File("base.raw"), Enumerable.Range(0, 300_000).Select(i => (byte)(i * 7)).ToArray());

        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=4096,table_size=2", "q-4k.qed", "16M");
        Tools.QemuIo(dir.Path, "qed", "q-4k.qed", "write -P 0x11 0 4k", "write -P 0x22 6k 1k", "write -P 0x33 5M 12k", "write -P 0x44 15M 4k");
        seeds.Add(("q-4k.qed", File.ReadAllBytes(dir.File("q-4k.qed"))));

        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=4096,table_size=2", "-b", "base.raw", "-F", "raw", "q-back.qed", "2M");
        Tools.QemuIo(dir.Path, "qed", "q-back.qed", "write -P 0x77 4k 2k", "write -z 64k 8k");
        seeds.Add(("q-back.qed", File.ReadAllBytes(dir.File("q-back.qed"))));

        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "q-64k.qed", "8M");
        Tools.QemuIo(dir.Path, "qed", "q-64k.qed", "write -P 0x55 0 64k", "write -P 0x66 1M 100k");
        seeds.Add(("q-64k.qed", File.ReadAllBytes(dir.File("q-64k.qed"))));

        string ours = dir.File("o-4k.qed");
        QedImage.Create(ours, new QedCreateOptions { Size = 12 << 20, ClusterSize = 4096, TableSize = 2, BackingFile = "base.raw", BackingFormat = "raw" });
        using (var image = QedImage.Open(ours))
        {
            image.Write(new byte[5000], 3000);
            image.Write(Enumerable.Repeat((byte)9, 9000).ToArray(), 4 << 20);
            image.WriteZeroes(8 << 20, 16384);
        }
        seeds.Add(("o-4k.qed", File.ReadAllBytes(ours)));

        string ts1 = dir.File("o-ts1.qed");
        QedImage.Create(ts1, new QedCreateOptions { Size = 1 << 20, ClusterSize = 4096, TableSize = 1 });
        using (var image = QedImage.Open(ts1))
        {
            image.Write(Enumerable.Repeat((byte)3, 10000).ToArray(), 100);
        }
        seeds.Add(("o-ts1.qed", File.ReadAllBytes(ts1)));

        // QED over QED with another geometry: 4 KiB clusters and tables of 16 clusters (64 KiB) over q-64k.qed, whose
        // format is probed; copied-up clusters, a zero cluster over backing data, and an L2 table far from the first.
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=4096,table_size=16", "-b", "q-64k.qed", "-F", "qed", "q-ts16-over-qed.qed");
        Tools.QemuIo(dir.Path, "qed", "q-ts16-over-qed.qed", "write -P 0x88 4k 2k", "write -z 64k 4k", "write -P 0x99 1040k 8k", "write -P 0xaa 7M 4k");
        seeds.Add(("q-ts16-over-qed.qed", File.ReadAllBytes(dir.File("q-ts16-over-qed.qed"))));
        return seeds;
    }

    /// <summary>Name of the backing file of <see cref="ChainTops.OverQed"/>: the CLI fuzz puts a mutated QED image there.</summary>
    public const string QedBaseName = "fuzz-base.qed";

    /// <summary>Name of the backing file of <see cref="ChainTops.OverRaw"/>: the CLI fuzz puts raw bytes of a random length there.</summary>
    public const string RawBaseName = "fuzz-base.raw";

    /// <summary>Two overlays for chains, with data copied up from their backing file, then pointed at <see cref="QedBaseName"/> and <see cref="RawBaseName"/>.</summary>
    /// <remarks>Needs the files <see cref="Build"/> makes.</remarks>
    public static ChainTops BuildChainTops(TempDirectory dir)
    {
        // 4 KiB clusters over a QED base of 64 KiB clusters (format probed): the top is larger than the base it names.
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=4096,table_size=2", "-b", "q-64k.qed", "-F", "qed", "top-over-qed.qed", "16M");
        Tools.QemuIo(dir.Path, "qed", "top-over-qed.qed", "write -P 0x31 8k 2k", "write -z 1M 64k", "write -P 0x32 15M 8k");
        Tools.QemuImg(dir.Path, "rebase", "-q", "-u", "-f", "qed", "-b", QedBaseName, "-F", "qed", "top-over-qed.qed");

        // 64 KiB clusters over raw (no probe).
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-b", "base.raw", "-F", "raw", "top-over-raw.qed", "1M");
        Tools.QemuIo(dir.Path, "qed", "top-over-raw.qed", "write -P 0x41 100k 4k", "write -z 512k 64k");
        Tools.QemuImg(dir.Path, "rebase", "-q", "-u", "-f", "qed", "-b", RawBaseName, "-F", "raw", "top-over-raw.qed");
        return new ChainTops(File.ReadAllBytes(dir.File("top-over-qed.qed")), File.ReadAllBytes(dir.File("top-over-raw.qed")));
    }

    /// <summary>The overlays of <see cref="BuildChainTops"/>.</summary>
    public sealed record ChainTops(byte[] OverQed, byte[] OverRaw);
}
