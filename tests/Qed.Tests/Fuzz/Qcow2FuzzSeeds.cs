using Qed.Tests.Infrastructure;

namespace Qed.Tests.Fuzz;

/// <summary>
/// qcow2 images to mutate, made by qemu-img/qemu-io and small enough to fuzz fast: v2 and v3; 512 B, 4 KiB, 16 KiB and
/// 64 KiB clusters; extended L2 entries with subclusters; zlib and zstd compressed clusters; an internal snapshot;
/// refcounts of 1 and 64 bits; ZERO clusters; a raw and a qcow2 backing file.
/// </summary>
internal static class Qcow2FuzzSeeds
{
    /// <summary>A raw file the seeds over raw name as backing (the same as the QED seeds' base.raw).</summary>
    public const string RawBase = "base.raw";

    /// <summary>A qcow2 image the seeds over qcow2 name as backing.</summary>
    public const string Qcow2Base = "base.qcow2";

    /// <summary>Builds the seeds in <paramref name="dir"/> (with the files some of them name as backing) and returns their bytes.</summary>
    public static List<(string Name, byte[] Bytes)> Build(TempDirectory dir)
    {
        var seeds = new List<(string, byte[])>();
        if (!File.Exists(dir.File(RawBase)))
        {
            File.WriteAllBytes(dir.File(RawBase), Enumerable.Range(0, 300_000).Select(i => (byte)(i * 7)).ToArray());
        }
        byte[] text = new byte[512 * 1024];
        for (int i = 0; i < text.Length; i++)
        {
            text[i] = (byte)('a' + i % 23 + i / 4096 % 3);
        }
        File.WriteAllBytes(dir.File("qcow2-text.raw"), text);

        void Make(string name, string options, string size, params string[] writes)
        {
            Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "-o", options, name, size);
            if (writes.Length > 0)
            {
                Tools.QemuIo(dir.Path, "qcow2", name, writes);
            }
            seeds.Add((name, File.ReadAllBytes(dir.File(name))));
        }

        Make("c-64k.qcow2", "cluster_size=64k", "8M", "write -P 0x11 0 128k", "write -P 0x12 1M 3000", "write -z 64k 64k", "write -P 0x13 7M 4k");
        Make("c-v2-4k.qcow2", "compat=0.10,cluster_size=4k", "4M", "write -P 0x21 0 8k", "write -P 0x22 2093056 16k", "write -z 0 4k");
        Make("c-512.qcow2", "cluster_size=512", "1M", "write -P 0x31 0 5000", "write -P 0x32 40k 10k");
        Make("c-ext-16k.qcow2", "extended_l2=on,cluster_size=16k", "4M", "write -P 0x41 0 2k", "write -P 0x42 9k 1k", "write -z 16k 4k", "write -P 0x43 1M 16k", "write -z 1M 512");
        Make("c-rc1.qcow2", "refcount_bits=1,cluster_size=4k", "2M", "write -P 0x51 0 12k", "write -P 0x52 1M 4k");
        Make("c-rc64.qcow2", "refcount_bits=64,cluster_size=4k", "2M", "write -P 0x61 4k 12k");

        Tools.QemuImg(dir.Path, "convert", "-c", "-O", "qcow2", "-o", "cluster_size=4k", "qcow2-text.raw", "c-zlib-4k.qcow2");
        seeds.Add(("c-zlib-4k.qcow2", File.ReadAllBytes(dir.File("c-zlib-4k.qcow2"))));
        Tools.QemuImg(dir.Path, "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd,cluster_size=16k", "qcow2-text.raw", "c-zstd-16k.qcow2");
        seeds.Add(("c-zstd-16k.qcow2", File.ReadAllBytes(dir.File("c-zstd-16k.qcow2"))));

        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "c-snap.qcow2", "1M");
        Tools.QemuIo(dir.Path, "qcow2", "c-snap.qcow2", "write -P 0x71 0 8k");
        Tools.QemuImg(dir.Path, "snapshot", "-c", "s1", "c-snap.qcow2");
        Tools.QemuIo(dir.Path, "qcow2", "c-snap.qcow2", "write -P 0x72 4k 8k");
        seeds.Add(("c-snap.qcow2", File.ReadAllBytes(dir.File("c-snap.qcow2"))));

        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "-b", RawBase, "-F", "raw", "c-over-raw.qcow2", "1M");
        Tools.QemuIo(dir.Path, "qcow2", "c-over-raw.qcow2", "write -P 0x81 4k 2k", "write -z 64k 8k");
        seeds.Add(("c-over-raw.qcow2", File.ReadAllBytes(dir.File("c-over-raw.qcow2"))));

        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", Qcow2Base, "2M");
        Tools.QemuIo(dir.Path, "qcow2", Qcow2Base, "write -P 0x91 0 1M");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "-o", "extended_l2=on", "-b", Qcow2Base, "-F", "qcow2", "c-over-qcow2.qcow2", "2M");
        Tools.QemuIo(dir.Path, "qcow2", "c-over-qcow2.qcow2", "write -P 0x92 2k 2k", "write -z 8k 6k", "write -P 0x93 65k 1k");
        seeds.Add(("c-over-qcow2.qcow2", File.ReadAllBytes(dir.File("c-over-qcow2.qcow2"))));
        File.Delete(dir.File("qcow2-text.raw"));
        return seeds;
    }
}
