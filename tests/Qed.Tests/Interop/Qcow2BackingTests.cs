using System.Text.Json;
using Qed.Formats;
using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Interop;

/// <summary>
/// Fixture F33 of QED-FORMAT.md (issue 11 point 2): a QED overlay made by qemu-img over a qcow2 base
/// (<c>qemu-img create -f qed -b base.qcow2 -F qcow2</c>, which stores only the name, so the base is probed) reads,
/// copies on write and checks as QEMU says, with the base's clusters in every qcow2 form (plain, zero, compressed,
/// extended L2, its own qcow2 backing file).
/// </summary>
public sealed class Qcow2BackingTests
{
    public static TheoryData<string> Bases => new()
    {
        "cluster_size=64k",
        "cluster_size=4k,compat=0.10",
        "cluster_size=64k,extended_l2=on",
        "cluster_size=64k,compression_type=zstd",
        "chain",
    };

    private static void MakeBase(string dir, string kind, Random random)
    {
        const long size = 8L << 20;
        if (kind == "chain")
        {
            Tools.QemuImg(dir, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "lower.qcow2", "6M");
            Tools.QemuIo(dir, "qcow2", "lower.qcow2", "write -P 0x31 0 6M");
            Tools.QemuImg(dir, "create", "-q", "-f", "qcow2", "-b", "lower.qcow2", "-F", "qcow2", "base.qcow2", size.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Tools.QemuIo(dir, "qcow2", "base.qcow2", "write -P 0x32 64k 128k", "write -z 1M 64k", "write -P 0x33 7M 4k");
            return;
        }
        Tools.QemuImg(dir, "create", "-q", "-f", "qcow2", "-o", kind, "base.qcow2", size.ToString(System.Globalization.CultureInfo.InvariantCulture));
        long cluster = kind.StartsWith("cluster_size=4k,", StringComparison.Ordinal) ? 4096 : 65536;
        Tools.QemuIo(dir, "qcow2", "base.qcow2", Formats.Qcow2ReadTests.RandomWrites(random, size, cluster, 24, compressed: true, zeroes: true));
    }

    [Theory]
    [MemberData(nameof(Bases))]
    public void Qed_over_qcow2_reads_copies_on_write_and_checks_like_qemu(string kind)
    {
        int seed = TestSeed.For($"{nameof(Qed_over_qcow2_reads_copies_on_write_and_checks_like_qemu)}({kind})");
        var random = new Random(seed);
        using var dir = new TempDirectory();
        MakeBase(dir.Path, kind, random);
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qed", "-b", "base.qcow2", "-F", "qcow2", "top.qed", "10M");
        Tools.QemuIo(dir.Path, "qed", "top.qed", "write -P 0x77 100k 8k");

        // Reads: the chain as QEMU flattens it.
        using (var device = ImageFormats.Qed.Open(dir.File("top.qed"), new ImageOpenOptions { ReadOnly = true }))
        {
            Assert.Equal("qcow2", device.Backing!.FormatName);
            Assert.Equal(Tools.QemuFlattenDigest(dir.Path, "top.qed"), DeviceDigest.Sha256(device));
        }

        // Copy on write: partial-cluster writes of ours over the qcow2 base; QEMU must read what a model says.
        Tools.QemuImg(dir.Path, "convert", "-f", "qed", "-O", "raw", "top.qed", "model.raw");
        byte[] model = File.ReadAllBytes(dir.File("model.raw"));
        using (var device = ImageFormats.Qed.Open(dir.File("top.qed")))
        {
            for (int i = 0; i < 20; i++)
            {
                long offset = random.NextInt64(device.Size - 70000);
                byte[] data = new byte[random.Next(1, 70000)];
                random.NextBytes(data);
                device.Write(data, offset);
                data.CopyTo(model, offset);
            }
        }
        Tools.QemuImg(dir.Path, "convert", "-f", "qed", "-O", "raw", "top.qed", "after.raw");
        Assert.True(model.AsSpan().SequenceEqual(File.ReadAllBytes(dir.File("after.raw"))), $"QEMU reads our copy-on-write differently (seed {seed})");

        // Check: qemu-img finds the overlay clean, and so do we (the qcow2 base is not checked).
        using var qemuCheck = JsonDocument.Parse(Tools.QemuImgRaw(dir.Path, "check", "--output=json", "top.qed").StdOut);
        using var image = ImageFormats.Qed.Open(dir.File("top.qed"), new ImageOpenOptions { ReadOnly = true });
        var ours = ImageFormats.Qed.Check(image);
        Assert.True(ours.IsClean, ours.ToString());
        Assert.False(qemuCheck.RootElement.TryGetProperty("corruptions", out _));
        Assert.False(qemuCheck.RootElement.TryGetProperty("leaks", out _));
        Assert.Equal(qemuCheck.RootElement.GetProperty("allocated-clusters").GetInt64(), ours.AllocatedClusters);
    }
}
