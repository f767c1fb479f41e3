using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;
using static Qed.Tests.Formats.Qcow2CheckOracle;

namespace Qed.Tests.Formats;

/// <summary>
/// The qcow2 check against <c>qemu-img check</c> at test time: clean images of every kind, the corruptions of QCOW2.md
/// §13.3 and more (refcount table, snapshots, subclusters, overflow), each compared counter by counter and message by
/// message, sync and async.
/// </summary>
public sealed class Qcow2CheckTests : IDisposable
{
    private const long K = 1024;

    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private void Img(params string[] args) => Tools.QemuImg(_dir.Path, args);

    private void Io(string path, params string[] commands) => Tools.QemuIo(_dir.Path, "qcow2", path, commands);

    /// <summary>
    /// 64 MiB, 64 KiB clusters, data at 0-192 KiB and 1 MiB: cluster 0 header, 1 refcount table, 2 refcount block
    /// (16-bit), 3 L1, 4 L2, 5-7 and 8 data (QCOW2.md §13.3's image).
    /// </summary>
    private string Basic(string name, string options = "compat=1.1")
    {
        string path = _dir.File(name + ".qcow2");
        Img("create", "-q", "-f", "qcow2", "-o", options, path, "64M");
        Io(path, "write -P 0x11 0 192k", "write -P 0x12 1M 64k");
        return path;
    }

    private static void Append(string path, long bytes)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Write);
        stream.SetLength(stream.Length + bytes);
    }

    private static void Truncate(string path, long length)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Write);
        stream.SetLength(length);
    }

    public static TheoryData<string> Cases => new()
    {
        "clean", "v2", "empty", "size 0", "refcount 1 to 2", "refcount 1 to 0", "L2 entry beyond EOF", "shared cluster",
        "unaligned data", "unaligned preallocated", "reserved L2 bits", "COPIED cleared", "COPIED set on refcount 2",
        "truncated data", "appended leak", "compressed with COPIED", "compressed beyond EOF", "reserved L1 bits",
        "unaligned L2 table", "L2 table beyond EOF", "L1 beyond EOF", "reftable reserved bits", "refblock unaligned",
        "refblock outside image", "refblock shared", "reftable empty", "v2 zero flag", "dirty lazy refcounts",
        "snapshots", "snapshot L1 unaligned", "snapshot L1 too large", "snapshot table too large",
        "snapshot table offset invalid", "snapshot table beyond EOF", "snapshot extra data too large", "snapshot v2",
        "refcount_bits=1 overflow", "refcount_bits=2 shared", "refcount_bits=4", "refcount_bits=8 leak",
        "refcount_bits=32", "refcount_bits=64 corruption", "extended L2", "extended L2 bad bitmap",
        "extended L2 unallocated with alloc bits", "compressed zlib", "compressed zstd", "compressed 4k clusters",
        "cluster_size=512", "cluster_size=2M", "bitmap", "bitmap without autoclear", "preallocated zero cluster",
        "zero plain", "size not a multiple of 512",
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Same_as_qemu_img(string name)
    {
        AssertSame(Build(name));
    }

    public static TheoryData<string> Fixtures => [.. Qcow2Fixtures.All.Where(f => !f.Encrypted).Select(f => f.Name)];

    /// <summary>Every fixture of QCOW2.md §16 (but the encrypted Q16, refused at open): what qemu-img says, and the figures of §16.2.</summary>
    [Theory]
    [MemberData(nameof(Fixtures))]
    public void Fixture_same_as_qemu_img(string name)
    {
        var fixture = Qcow2Fixtures.Get(name);
        var outcome = AssertSame(fixture.Path);
        Assert.Equal(fixture.Check.ExitCode, outcome.ExitCode);
        Assert.Equal(fixture.Check.Corruptions, outcome.Counters!["corruptions"]);
        if (fixture.Check.AllocatedClusters is { } allocated)
        {
            Assert.Equal(allocated, outcome.Counters!["allocated-clusters"]);
        }
        if (fixture.Check.ImageEndOffset is { } end)
        {
            Assert.Equal(end, outcome.Counters!["image-end-offset"]);
        }
    }

    /// <summary>The verified figures of QCOW2.md §13.3 come out of qemu-img at test time too (the table is the spec, the oracle decides).</summary>
    [Theory]
    [InlineData("refcount 1 to 2", 1, 1, 2)]
    [InlineData("refcount 1 to 0", 2, 0, 2)]
    [InlineData("L2 entry beyond EOF", 2, 1, 2)]
    [InlineData("shared cluster", 1, 1, 2)]
    [InlineData("unaligned data", 2, 0, 2)]
    [InlineData("reserved L2 bits", 1, 0, 2)]
    [InlineData("COPIED cleared", 1, 0, 2)]
    [InlineData("truncated data", 1, 0, 2)]
    [InlineData("appended leak", 0, 1, 3)]
    [InlineData("compressed with COPIED", 1, 0, 2)]
    [InlineData("compressed beyond EOF", 1, 1, 2)]
    [InlineData("dirty lazy refcounts", 6, 0, 2)]
    public void Section_13_3_figures(string name, long corruptions, long leaks, int exit)
    {
        var outcome = AssertSame(Build(name));
        Assert.Equal(exit, outcome.ExitCode);
        Assert.Equal(corruptions, outcome.Counters!["corruptions"]);
        Assert.Equal(leaks, outcome.Counters!["leaks"]);
    }

    private string Build(string name)
    {
        string path;
        switch (name)
        {
            case "clean":
                return Basic("clean");
            case "v2":
                return Basic("v2", "compat=0.10");
            case "empty":
                path = _dir.File("empty.qcow2");
                Img("create", "-q", "-f", "qcow2", path, "1G");
                return path;
            case "size 0":
                path = _dir.File("size0.qcow2");
                Img("create", "-q", "-f", "qcow2", path, "0");
                return path;
            case "size not a multiple of 512":
                path = Basic("odd");
                PokeBigEndian(path, 24, 64 * K * K - 100);
                return path;
            case "refcount 1 to 2":
                path = Basic("rc2");
                PokeBigEndian(path, 0x20000 + 5 * 2, 2, 2);
                return path;
            case "refcount 1 to 0":
                path = Basic("rc0");
                PokeBigEndian(path, 0x20000 + 5 * 2, 0, 2);
                return path;
            case "L2 entry beyond EOF":
                path = Basic("l2eof");
                PokeBigEndian(path, 0x40000, 0x8000_0000_4000_0000);
                return path;
            case "shared cluster":
                path = Basic("shared");
                PokeBigEndian(path, 0x40010, 0x8000_0000_0005_0000);
                return path;
            case "unaligned data":
                path = Basic("unaligned");
                PokeBigEndian(path, 0x40008, 0x8000_0000_0006_0200);
                return path;
            case "unaligned preallocated":
                path = Basic("unaligned-zero");
                PokeBigEndian(path, 0x40008, 0x8000_0000_0006_0201);
                return path;
            case "reserved L2 bits":
                path = Basic("reserved");
                PokeBigEndian(path, 0x40008, 0x8000_0000_0006_0002);
                return path;
            case "COPIED cleared":
                path = Basic("copied0");
                PokeBigEndian(path, 0x40000, 0x0000_0000_0005_0000);
                return path;
            case "COPIED set on refcount 2":
                path = Basic("copied2");
                PokeBigEndian(path, 0x20000 + 4 * 2, 2, 2);
                return path;
            case "truncated data":
                path = Basic("truncated");
                Truncate(path, 0x80000);
                return path;
            case "appended leak":
                path = Basic("leak");
                Append(path, 64 * K);
                PokeBigEndian(path, 0x20000 + 9 * 2, 1, 2);
                return path;
            case "compressed with COPIED":
                path = Basic("ccopied");
                PokeBigEndian(path, 0x40000, 0xC000_0000_0005_0000);
                return path;
            case "compressed beyond EOF":
                path = Basic("ceof");
                PokeBigEndian(path, 0x40000, 0x4000_0100_0000_0000);
                return path;
            case "reserved L1 bits":
                path = Basic("l1reserved");
                PokeBigEndian(path, 0x30000, 0x8100_0000_0004_0000);
                return path;
            case "unaligned L2 table":
                path = Basic("l2unaligned");
                PokeBigEndian(path, 0x30000, 0x8000_0000_0004_0200);
                return path;
            case "L2 table beyond EOF":
                path = Basic("l2tableeof");
                PokeBigEndian(path, 0x30000, 0x8000_0000_1000_0000);
                return path;
            case "L1 beyond EOF":
                path = Basic("l1eof");
                PokeBigEndian(path, 40, 0x1000_0000);
                return path;
            case "reftable reserved bits":
                path = Basic("rtreserved");
                PokeBigEndian(path, 0x10000, 0x0000_0000_0002_0100);
                return path;
            case "refblock unaligned":
                path = Basic("rbunaligned");
                PokeBigEndian(path, 0x10000, 0x0000_0000_0002_0200);
                return path;
            case "refblock outside image":
                path = Basic("rboutside");
                PokeBigEndian(path, 0x10008, 0x0000_0000_4000_0000);
                return path;
            case "refblock shared":
                path = Basic("rbshared");
                PokeBigEndian(path, 0x10008, 0x0000_0000_0002_0000);
                return path;
            case "reftable empty":
                path = Basic("rtempty");
                PokeBigEndian(path, 0x10000, 0);
                return path;
            case "v2 zero flag":
                path = Basic("v2zero", "compat=0.10");
                PokeBigEndian(path, 0x40008, 0x8000_0000_0006_0001);
                return path;
            case "preallocated zero cluster":
                path = Basic("zeroalloc");
                Io(path, "write -z 64k 64k");
                return path;
            case "zero plain":
                path = Basic("zeroplain");
                Io(path, "write -z 4M 128k");
                return path;
            case "dirty lazy refcounts":
                path = _dir.File("dirty.qcow2");
                Img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", path, "64M");
                Tools.Run("qemu-io", ["-f", "qcow2", "-c", "write -P 0xd1 0 128k", "-c", "write -P 0xd2 5M 64k", "-c", "sigraise 9", path], _dir.Path);
                return path;
            case "snapshots":
                return Snapshots("snap");
            case "snapshot L1 unaligned":
                path = Snapshots("snapl1");
                PokeBigEndian(path, (long)PeekBigEndian(path, 64), PeekBigEndian(path, (long)PeekBigEndian(path, 64)) + 0x200);
                return path;
            case "snapshot L1 too large":
                path = Snapshots("snapl1big");
                PokeBigEndian(path, (long)PeekBigEndian(path, 64) + 8, 0x40_0001, 4);
                return path;
            case "snapshot table too large":
                path = Basic("snaptoolarge");
                PokeBigEndian(path, 60, 0x2_0000, 4);
                return path;
            case "snapshot table offset invalid":
                path = Basic("snapoffset");
                PokeBigEndian(path, 60, 1, 4);
                PokeBigEndian(path, 64, 0x200);
                return path;
            case "snapshot table beyond EOF":
                path = Basic("snapeof");
                PokeBigEndian(path, 60, 1, 4);
                PokeBigEndian(path, 64, 0x100_0000);
                return path;
            case "snapshot extra data too large":
                path = Snapshots("snapextra");
                PokeBigEndian(path, (long)PeekBigEndian(path, 64) + 36, 2000, 4);
                return path;
            case "snapshot v2":
                path = Basic("snapv2", "compat=0.10");
                Img("snapshot", "-c", "s1", path);
                Io(path, "write -P 0x33 0 64k");
                return path;
            case "refcount_bits=1 overflow":
                path = Basic("rb1", "refcount_bits=1");
                PokeBigEndian(path, 0x40010, 0x8000_0000_0005_0000);
                return path;
            case "refcount_bits=2 shared":
                path = Basic("rb2", "refcount_bits=2");
                PokeBigEndian(path, 0x40010, 0x8000_0000_0005_0000);
                return path;
            case "refcount_bits=4":
                return Basic("rb4", "refcount_bits=4");
            case "refcount_bits=8 leak":
                path = Basic("rb8", "refcount_bits=8");
                Append(path, 128 * K);
                Tools.Poke(path, 0x20000 + 10, 3);
                return path;
            case "refcount_bits=32":
                return Snapshots("rb32", "refcount_bits=32");
            case "refcount_bits=64 corruption":
                path = Basic("rb64", "refcount_bits=64");
                PokeBigEndian(path, 0x20000 + 6 * 8, 0);
                return path;
            case "extended L2":
                return ExtendedL2("ext");
            case "extended L2 bad bitmap":
                path = ExtendedL2("extbad");
                PokeBigEndian(path, 0x40008, 0x0000_0001_0000_0001);
                return path;
            case "extended L2 unallocated with alloc bits":
                path = ExtendedL2("extunalloc");
                PokeBigEndian(path, 0x40000 + 100 * 16 + 8, 0x0000_0000_0000_0004);
                return path;
            case "compressed zlib":
                return Compressed("zlib", "compression_type=zlib");
            case "compressed zstd":
                return Compressed("zstd", "compression_type=zstd");
            case "compressed 4k clusters":
                return Compressed("c4k", "cluster_size=4096");
            case "cluster_size=512":
                path = _dir.File("c512.qcow2");
                Img("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", path, "64M");
                Io(path, "write -P 0x31 0 5000", "write -P 0x32 40k 100k", "write -P 0x33 63M 1536");
                return path;
            case "cluster_size=2M":
                path = _dir.File("c2m.qcow2");
                Img("create", "-q", "-f", "qcow2", "-o", "cluster_size=2M", path, "1G");
                Io(path, "write -P 0x51 3M 4k", "write -P 0x52 700M 2M", "write -z 700M 1M");
                return path;
            case "bitmap":
                path = Basic("bitmap");
                Img("bitmap", "--add", path, "bm0");
                Img("bitmap", "--add", "-g", "1M", path, "bm1");
                return path;
            case "bitmap without autoclear":
                path = Basic("bitmapclear");
                Img("bitmap", "--add", path, "bm0");
                PokeBigEndian(path, 88, 0);
                return path;
            default:
                throw new ArgumentException(name);
        }
    }

    private string Snapshots(string name, string options = "compat=1.1")
    {
        string path = _dir.File(name + ".qcow2");
        Img("create", "-q", "-f", "qcow2", "-o", options, path, "64M");
        Io(path, "write -P 0xc1 0 128k");
        Img("snapshot", "-c", "s1", path);
        Io(path, "write -P 0xc2 64k 64k", "write -P 0xc3 1M 64k");
        Img("snapshot", "-c", "s2", path);
        Io(path, "write -P 0xc4 0 4k", "write -z 1M 64k");
        return path;
    }

    private string ExtendedL2(string name)
    {
        string path = _dir.File(name + ".qcow2");
        Img("create", "-q", "-f", "qcow2", "-o", "extended_l2=on", path, "64M");
        Io(path, "write -P 0x61 0 4k", "write -P 0x62 70k 2k", "write -z 8k 4k", "write -z 1M 64k", "write -P 0x63 2M 64k", "write -z 2M 2k");
        return path;
    }

    private string Compressed(string name, string options)
    {
        string raw = _dir.File(name + ".raw");
        using (var stream = File.Create(raw))
        {
            byte[] text = System.Text.Encoding.ASCII.GetBytes(string.Concat(Enumerable.Range(0, 40000).Select(i => $"{i:D7}\n")));
            stream.Write(text);
            stream.SetLength(4 * K * K);
        }
        string path = _dir.File(name + ".qcow2");
        Img("convert", "-c", "-O", "qcow2", "-o", options, raw, path);
        return path;
    }
}
