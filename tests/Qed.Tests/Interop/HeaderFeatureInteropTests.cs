using Qed.Format;
using Qed.Tests.Infrastructure;
using static Qed.Tests.Interop.Op;

namespace Qed.Tests.Interop;

/// <summary>
/// Header bits set by QEMU (or by a QEMU crash) handled by us, and the result handed back to QEMU:
/// the need-check bit of a crashed qemu-io (F13), unknown compat and autoclear bits (F27), and a dirty
/// image with an invalid L2 entry that a writable open must repair (F16 + NEED_CHECK, §8.6).
/// </summary>
public sealed class HeaderFeatureInteropTests
{
    [Fact]
    public void F13_ImageLeftDirtyByACrashedQemuIsRepairedByOurWritableOpen()
    {
        using var tmp = new TempDirectory();
        ImageWriter.Qemu.Create(tmp.Path, "f13.qed", 16 * M);
        var crash = Tools.Run("qemu-io", ["-f", "qed", "-t", "writeback", "-c", "write -P 0xf1 0 4k", "-c", "abort", "f13.qed"], tmp.Path);
        Assert.Equal(134, crash.ExitCode);
        string file = tmp.File("f13.qed");
        Assert.Equal(QedFeatures.NeedCheck, OnDisk.Header(file).Features);

        var model = new DiskModel(16 * M).Apply([W(0xf1, 0, 4 * K)]);
        using (var readOnly = InteropAssert.OpenReadOnly(file))
        {
            InteropAssert.ReadsLikeModel(readOnly, model, "dirty image, read-only");
        }
        Assert.Equal(QedFeatures.NeedCheck, OnDisk.Header(file).Features);

        ImageWriter.Qed().Session(tmp.Path, "f13.qed");
        Assert.Equal(QedFeatures.None, OnDisk.Header(file).Features);
        var check = QemuOracle.AssertClean(tmp.Path, "f13.qed");
        Assert.Equal(1, check.AllocatedClusters);
        Assert.Equal(model.Sha256(), InteropAssert.QemuReadsLikeModel(tmp.Path, "f13.qed", model));
    }

    [Fact]
    public void F27_UnknownCompatAndAutoclearBits()
    {
        using var tmp = new TempDirectory();
        ImageWriter.Qemu.Create(tmp.Path, "f27.qed", 16 * M);
        string file = tmp.File("f27.qed");
        Tools.Poke(file, 24, 0x01);
        Tools.Poke(file, 32, 0x01);

        using (var readOnly = InteropAssert.OpenReadOnly(file))
        {
            Assert.Equal(new DiskModel(16 * M).Sha256(), DeviceDigest.Sha256(readOnly));
        }
        Assert.Equal((1UL, 1UL), (OnDisk.Header(file).CompatFeatures, OnDisk.Header(file).AutoclearFeatures));

        // A writer clears the autoclear bits it does not know and keeps the compat bits, as QEMU does.
        ImageWriter.Qed().Session(tmp.Path, "f27.qed", W(0x27, 1 * M, 4 * K));
        Assert.Equal((1UL, 0UL), (OnDisk.Header(file).CompatFeatures, OnDisk.Header(file).AutoclearFeatures));
        QemuOracle.AssertClean(tmp.Path, "f27.qed");
        QemuOracle.Io(tmp.Path, "f27.qed", "read -P 0x27 1M 4k", "read -P 0 0 1M");
    }

    [Fact]
    public void DirtyImageWithAnInvalidL2EntryIsRepairedLikeQemuDoes()
    {
        // F16 plus the need-check bit: L2[1] points beyond the end of the file. A writable open repairs it by
        // zeroing the entry (guest [64K,128K) then reads zeros) and clears the bit, for QEMU and for us.
        using var tmp = new TempDirectory();
        string q = Directory.CreateDirectory(tmp.File("qemu")).FullName;
        string o = Directory.CreateDirectory(tmp.File("qed")).FullName;
        foreach (string dir in new[] { q, o })
        {
            ImageWriter.Qemu.Create(dir, "f16.qed", 16 * M);
            ImageWriter.Qemu.Session(dir, "f16.qed", W(0x16, 0, 64 * K), W(0x17, 64 * K, 64 * K));
            string path = Path.Combine(dir, "f16.qed");
            Tools.PokeU64(path, 0x60008, 0x10000000);
            Tools.Poke(path, 16, 0x02);
        }
        Tools.QemuIo(q, "qed", "f16.qed", "read -P 0x16 0 64k");
        ImageWriter.Qed().Session(o, "f16.qed");

        var model = new DiskModel(16 * M).Apply([W(0x16, 0, 64 * K)]);
        foreach (string dir in new[] { q, o })
        {
            string path = Path.Combine(dir, "f16.qed");
            Assert.Equal(QedFeatures.None, OnDisk.Header(path).Features);
            Assert.Equal(0UL, OnDisk.L2(path, 64 * K));
            var check = QemuOracle.Check(dir, "f16.qed");
            Assert.True(check.Corruptions == 0 && check.CheckErrors == 0 && check.AllocatedClusters == 1, check.ToString());
            Assert.Equal(model.Sha256(), InteropAssert.QemuReadsLikeModel(dir, "f16.qed", model));
            using var device = InteropAssert.OpenReadOnly(path);
            InteropAssert.ReadsLikeModel(device, model, $"repaired image in {dir}");
        }
        QemuOracle.AssertIdentical(tmp.Path, Path.Combine(q, "f16.qed"), Path.Combine(o, "f16.qed"));
    }
}
