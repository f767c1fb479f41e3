using System.Text;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Interop;

/// <summary>What <c>qemu-img check</c> says about a fixture (QCOW2.md §16.2): exit code, corruptions, and for clean images the allocated clusters and image end offset.</summary>
internal sealed record Qcow2CheckFigures(int ExitCode, long Corruptions, long? AllocatedClusters, long? ImageEndOffset)
{
    /// <summary>A clean image: exit 0, no corruptions, these figures.</summary>
    public static Qcow2CheckFigures Clean(long allocated, long imageEnd) => new(0, 0, allocated, imageEnd);
}

/// <summary>One fixture of QCOW2.md §16: built by QEMU, described by the reference.</summary>
/// <param name="Name">The fixture's name (<c>Q01</c>); its image is <c>Q01.qcow2</c> and every file of it starts with the name.</param>
/// <param name="Covers">What the fixture exercises, from §16.2.</param>
/// <param name="VirtualSize">The virtual disk size in bytes.</param>
/// <param name="Digest">sha256 of the raw disk as qemu-img converts it (Q16: with the key).</param>
/// <param name="Check">What <c>qemu-img check</c> reports (Q16: exit 1, it cannot open the image without the key).</param>
internal sealed record Qcow2Fixture(string Name, string Covers, long VirtualSize, string Digest, Qcow2CheckFigures Check)
{
    /// <summary>The image's file name, relative to <see cref="Qcow2Fixtures.Directory"/>.</summary>
    public string FileName => Name + ".qcow2";

    /// <summary>The image's full path (builds the fixtures on first use). Treat it as read-only: copy it with <see cref="Qcow2Fixtures.CopyTo"/> to change it.</summary>
    public string Path => System.IO.Path.Combine(Qcow2Fixtures.Directory, FileName);

    /// <summary>Every file of the fixture (image, backing files, data file), full paths.</summary>
    public IReadOnlyList<string> Files => [.. System.IO.Directory.GetFiles(Qcow2Fixtures.Directory, Name + "*").Order(StringComparer.Ordinal)];

    /// <summary>Whether reading the guest data needs the LUKS key (Q16).</summary>
    public bool Encrypted => Name == "Q16";

    public override string ToString() => Name;
}

/// <summary>
/// The qcow2 fixtures Q01-Q19 of QCOW2.md §16.1, built once per test run with qemu-img and qemu-io (thread-safe, on
/// first use) in a temporary directory that is removed when the process exits. The expected digests and check figures
/// are the reference's (§16.2), never our own output; <c>Qcow2FixtureTests</c> holds QEMU to them.
/// </summary>
internal static class Qcow2Fixtures
{
    private const long K = 1024;
    private const long M = 1024 * K;
    private const long G = 1024 * M;

    /// <summary>The LUKS passphrase of Q16.</summary>
    public const string Q16Secret = "qcow2-test";

    private const string SameAsQ07 = "2de01f5f80f91cdbb1c9c11439181f96cce179070f10d6997a3d5f06413b160c";

    /// <summary>Every fixture in §16.2's order.</summary>
    public static IReadOnlyList<Qcow2Fixture> All { get; } =
    [
        new("Q01", "v2, 64 KiB; write -z deallocates (L2[1] -> 0)", 64 * M,
            "00e4f7c8d58d98ce575011789fda3db1e366805638f0a4613629f2631e6f8b79", Qcow2CheckFigures.Clean(2, 524288)),
        new("Q02", "v3 default; write across the L2 boundary at 512 MiB; two L2 tables", 1 * G,
            "92219c99893a5fc7a66d956850b39631b88c484e073ef645090290fc7035ffe9", Qcow2CheckFigures.Clean(4, 655360)),
        new("Q03", "512 B clusters: L1 of 32 clusters, many L2 tables, 213 data clusters", 64 * M,
            "fbf658d94df0d8e8e0c79a7c1d69923a5e02c4a0145e82516fea0a7cf137cf61", Qcow2CheckFigures.Clean(213, 130048)),
        new("Q04", "4 KiB clusters; write across the 2 MiB L2 boundary", 256 * M,
            "f656115a9c197cfae4b7d92f5cb536af44cb3dcfffeb203e17a70b029b830015", Qcow2CheckFigures.Clean(5, 49152)),
        new("Q05", "2 MiB clusters; partial cluster writes (COW zeros)", 1 * G,
            "e354e6859804bc97f831b93ba403b0272f0863c25f19e3872baa8c06cf98ddd0", Qcow2CheckFigures.Clean(2, 14680064)),
        new("Q06", "extended L2, 2 KiB subclusters: data/zero/unallocated mixes", 64 * M,
            "8011c440a78ba3af102762625de5723ad0f59f71641947d9c311f78c1f451547", Qcow2CheckFigures.Clean(3, 524288)),
        new("Q07", "zlib compression, 48 compressed + 16 plain clusters", 16 * M, SameAsQ07, Qcow2CheckFigures.Clean(64, 2097152)),
        new("Q08", "zstd compression (same data as Q07)", 16 * M, SameAsQ07, Qcow2CheckFigures.Clean(64, 1638400)),
        new("Q09", "ZERO_PLAIN, ZERO_ALLOC (stale bytes under it) over a qcow2 backing file", 8 * M,
            "3bbd4bb15c16055992d125698f255904af140c3f0d2290b6215479938b2e5368", Qcow2CheckFigures.Clean(2, 458752)),
        new("Q10", "chain of three, 64K/4K/64K clusters, top 6 MiB over 4 MiB", 6 * M,
            "0f437770fbebf038fa10156f2857a823f28e594ce3c0e0512f32da1171f082a4", Qcow2CheckFigures.Clean(2, 458752)),
        new("Q11", "raw backing file of 1 049 576 bytes under a 4 MiB image", 4 * M,
            "296737723de1bf591122eab891bb861135e566ff8a2dcf612fa0afedcd92a89e", Qcow2CheckFigures.Clean(2, 458752)),
        new("Q12", "two internal snapshots; active L1 differs", 64 * M,
            "530cdefc7d8d4c14cf9a64e2f41177c58ccf6c1a178a9bfcda9fcbf6a7957ebd", Qcow2CheckFigures.Clean(3, 983040)),
        new("Q13", "dirty bit, lazy refcounts, writer killed", 64 * M,
            "b1ae9d00ac09c8f50db04a5fd6484325cebe26cb34fde4187a3982b067130820", new Qcow2CheckFigures(2, 6, null, null)),
        new("Q14", "refcount_bits=1 (order 0)", 64 * M,
            "7c06b26f543f34229f2a0e7760c8c971736669a851cda4bc2f33a9958d49c390", Qcow2CheckFigures.Clean(4, 589824)),
        new("Q15", "refcount_bits=64 (order 6)", 64 * M,
            "c710a9659a427a570ca1eb967433b50f25096c152ff33e115af35969e24b6576", Qcow2CheckFigures.Clean(4, 589824)),
        new("Q16", "LUKS: convert/check refused without the key; info works", 16 * M,
            "68e9b42aec65827114a078babc6f261b43ed8d4f2b475cc435709124efc00a76", new Qcow2CheckFigures(1, 0, null, null)),
        new("Q17", "external data file Q17.data (named relative to the working directory)", 16 * M,
            "db6efbc979c49464362b558e5b118da49a0d5fb61704115067a06e0828346cfe", Qcow2CheckFigures.Clean(2, 327680)),
        new("Q18", "extended L2 over a qcow2 backing file (unallocated subclusters read it)", 4 * M,
            "25989c453347b170d1ca194683860cae9e851da94b64866bc4aa71bf0c5502ab", Qcow2CheckFigures.Clean(2, 458752)),
        new("Q19", "zlib compression with 4 KiB clusters (split 58/4)", 16 * M, SameAsQ07, Qcow2CheckFigures.Clean(1024, 1753088)),
    ];

    private static readonly Lazy<TempDirectory> s_built = new(Build, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The directory holding every fixture (built on first use). Q17 must be read with this as the working directory.</summary>
    public static string Directory => s_built.Value.Path;

    /// <summary>The fixture named <paramref name="name"/> (<c>Q01</c> ... <c>Q19</c>).</summary>
    public static Qcow2Fixture Get(string name) => All.Single(f => f.Name == name);

    /// <summary>The fixture names, for <c>[MemberData]</c>.</summary>
    public static TheoryData<string> Names() => [.. All.Select(f => f.Name)];

    /// <summary>Copies every file of a fixture into <paramref name="directory"/> (so a test may change it) and returns the image's path there.</summary>
    public static string CopyTo(string name, string directory)
    {
        var fixture = Get(name);
        foreach (string file in fixture.Files)
        {
            File.Copy(file, System.IO.Path.Combine(directory, System.IO.Path.GetFileName(file)), overwrite: true);
        }
        return System.IO.Path.Combine(directory, fixture.FileName);
    }

    /// <summary>qemu-img's arguments naming Q16 with its key (<c>--object secret ... --image-opts</c>), for a command like <c>convert</c>; prepend the command.</summary>
    public static string[] Q16KeyedSource(string path) =>
        ["--object", $"secret,id=s0,data={Q16Secret}", "--image-opts", $"driver=qcow2,encrypt.key-secret=s0,file.filename={path}"];

    private static TempDirectory Build()
    {
        var directory = new TempDirectory();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => directory.Dispose();
        var started = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            Recipes(directory.Path);
        }
        catch
        {
            directory.Dispose();
            throw;
        }
        TestSeed.Report($"qcow2 fixtures Q01-Q19 built by QEMU in {started.Elapsed.TotalSeconds:F1} s in {directory.Path}");
        return directory;
    }

    /// <summary>QCOW2.md §16.1, step by step; every name is relative to <paramref name="d"/>, which is also every tool's working directory.</summary>
    private static void Recipes(string d)
    {
        WriteInputs(d);

        Create(d, "Q01.qcow2", "64M", "-o", "compat=0.10");
        Io(d, "Q01.qcow2", "write -P 0x11 0 128k", "write -P 0x12 1049088 3000", "write -z 64k 64k");
        Create(d, "Q02.qcow2", "1G");
        Io(d, "Q02.qcow2", "write -P 0x21 0 64k", "write -P 0x22 536866816 8192", "write -P 0x23 1000M 4k", "write -z 0 4k");
        Create(d, "Q03.qcow2", "64M", "-o", "cluster_size=512");
        Io(d, "Q03.qcow2", "write -P 0x31 0 5000", "write -P 0x32 40k 100k", "write -P 0x33 63M 1536");
        Create(d, "Q04.qcow2", "256M", "-o", "cluster_size=4k");
        Io(d, "Q04.qcow2", "write -P 0x41 2093056 16k", "write -P 0x42 100M 1000", "write -z 2093056 4k");
        Create(d, "Q05.qcow2", "1G", "-o", "cluster_size=2M");
        Io(d, "Q05.qcow2", "write -P 0x51 3M 4k", "write -P 0x52 700M 2M", "write -z 700M 1M");
        Create(d, "Q06.qcow2", "64M", "-o", "extended_l2=on");
        Io(d, "Q06.qcow2", "write -P 0x61 0 4k", "write -P 0x62 70k 2k", "write -z 8k 4k", "write -z 1M 64k", "write -P 0x63 2M 64k", "write -z 2M 2k");
        Tools.QemuImg(d, "convert", "-c", "-O", "qcow2", "mixed.raw", "Q07.qcow2");
        Tools.QemuImg(d, "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", "mixed.raw", "Q08.qcow2");
        Create(d, "Q09-base.qcow2", "8M");
        Io(d, "Q09-base.qcow2", "write -P 0x91 0 8M");
        Create(d, "Q09.qcow2", null, "-b", "Q09-base.qcow2", "-F", "qcow2");
        Io(d, "Q09.qcow2", "write -z 0 128k", "write -z 1M 4k", "write -P 0x92 2M 64k", "write -z 2M 64k", "write -z -u 4M 64k");
        Create(d, "Q10-base.qcow2", "4M");
        Io(d, "Q10-base.qcow2", "write -P 0xa1 0 4M");
        Create(d, "Q10-mid.qcow2", null, "-o", "cluster_size=4k", "-b", "Q10-base.qcow2", "-F", "qcow2");
        Io(d, "Q10-mid.qcow2", "write -P 0xa2 1000 3000", "write -P 0xa3 1M 512");
        Create(d, "Q10.qcow2", "6M", "-b", "Q10-mid.qcow2", "-F", "qcow2");
        Io(d, "Q10.qcow2", "write -P 0xa4 512 1024", "write -P 0xa5 5M 4k");
        File.WriteAllBytes(System.IO.Path.Combine(d, "Q11-base.raw"), TextBytes(1049576));
        Create(d, "Q11.qcow2", "4M", "-b", "Q11-base.raw", "-F", "raw");
        Io(d, "Q11.qcow2", "write -P 0xb1 64k 512", "write -P 0xb2 1049088 1024");
        Create(d, "Q12.qcow2", "64M");
        Io(d, "Q12.qcow2", "write -P 0xc1 0 128k");
        Tools.QemuImg(d, "snapshot", "-c", "s1", "Q12.qcow2");
        Io(d, "Q12.qcow2", "write -P 0xc2 64k 64k", "write -P 0xc3 1M 64k");
        Tools.QemuImg(d, "snapshot", "-c", "s2", "Q12.qcow2");
        Io(d, "Q12.qcow2", "write -P 0xc4 0 4k", "write -z 1M 64k");
        Create(d, "Q13.qcow2", "64M", "-o", "lazy_refcounts=on");
        // The writer kills itself (SIGKILL) so the dirty bit stays set: its exit status is the point, not a failure.
        Tools.Run("qemu-io", ["-f", "qcow2", "-c", "write -P 0xd1 0 128k", "-c", "write -P 0xd2 5M 64k", "-c", "sigraise 9", "Q13.qcow2"], d);
        Create(d, "Q14.qcow2", "64M", "-o", "refcount_bits=1");
        Io(d, "Q14.qcow2", "write -P 0xe1 0 192k", "write -P 0xe2 9M 64k");
        Create(d, "Q15.qcow2", "64M", "-o", "refcount_bits=64");
        Io(d, "Q15.qcow2", "write -P 0xf1 0 192k", "write -P 0xf2 9M 64k");
        Tools.QemuImg(d, "create", "-q", "-f", "qcow2", "--object", $"secret,id=s0,data={Q16Secret}",
            "-o", "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10", "Q16.qcow2", "16M");
        Expect(Tools.Run("qemu-io", ["--object", $"secret,id=s0,data={Q16Secret}", "--image-opts", "-c", "write -P 0x16 0 64k",
            "driver=qcow2,encrypt.key-secret=s0,file.filename=Q16.qcow2"], d), "qemu-io Q16");
        Create(d, "Q17.qcow2", "16M", "-o", "data_file=Q17.data");
        Io(d, "Q17.qcow2", "write -P 0x17 64k 128k", "write -z 64k 4k");
        Create(d, "Q18-base.qcow2", "4M");
        Io(d, "Q18-base.qcow2", "write -P 0x81 0 4M");
        Create(d, "Q18.qcow2", null, "-o", "extended_l2=on", "-b", "Q18-base.qcow2", "-F", "qcow2");
        Io(d, "Q18.qcow2", "write -P 0x82 2k 2k", "write -z 8k 6k", "write -P 0x83 65k 1k");
        Tools.QemuImg(d, "convert", "-c", "-O", "qcow2", "-o", "cluster_size=4k", "mixed.raw", "Q19.qcow2");

        File.Delete(System.IO.Path.Combine(d, "mixed.raw"));
    }

    /// <summary>mixed.raw of §16.1: 3 MiB of numbered text lines, then zeros to 16 MiB, with 1 MiB of Python's random.Random(7) noise at 6 400 KiB.</summary>
    private static void WriteInputs(string d)
    {
        // The noise is Python's Mersenne Twister stream, so Python makes it (as the recipe does).
        Expect(Tools.Run("python3", ["-c", "import random; open('noise.raw', 'wb').write(random.Random(7).randbytes(1048576))"], d), "python3 noise");
        string noisePath = System.IO.Path.Combine(d, "noise.raw");
        byte[] noise = File.ReadAllBytes(noisePath);
        File.Delete(noisePath);
        var mixed = new byte[16 * M];
        TextBytes(3 * (int)M).CopyTo(mixed, 0);
        noise.CopyTo(mixed, 100 * 64 * K);
        File.WriteAllBytes(System.IO.Path.Combine(d, "mixed.raw"), mixed);
    }

    /// <summary>The first <paramref name="length"/> bytes of text.raw: lines <c>%07d\n</c> counting from 0.</summary>
    private static byte[] TextBytes(int length)
    {
        var text = new byte[length];
        for (int i = 0; i < length; i++)
        {
            int line = i / 8, column = i % 8;
            text[i] = column == 7 ? (byte)'\n' : (byte)('0' + (line / Pow10(6 - column)) % 10);
        }
        return text;
    }

    private static int Pow10(int exponent)
    {
        int value = 1;
        for (int i = 0; i < exponent; i++)
        {
            value *= 10;
        }
        return value;
    }

    private static void Create(string d, string file, string? size, params string[] options)
    {
        var arguments = new List<string> { "create", "-q", "-f", "qcow2" };
        arguments.AddRange(options);
        arguments.Add(file);
        if (size is not null)
        {
            arguments.Add(size);
        }
        Tools.QemuImg(d, [.. arguments]);
    }

    /// <summary>The recipe's <c>io</c>: <c>qemu-io -f qcow2 -c CMD ... FILE</c> with QEMU's default cache mode.</summary>
    private static void Io(string d, string file, params string[] commands)
    {
        var arguments = new List<string> { "-f", "qcow2" };
        foreach (string command in commands)
        {
            arguments.Add("-c");
            arguments.Add(command);
        }
        arguments.Add(file);
        var result = Tools.Run("qemu-io", arguments, d);
        if (result.ExitCode != 0 || result.StdOut.Contains("failed", StringComparison.Ordinal))
        {
            throw new InvalidOperationException($"qemu-io {string.Join(' ', arguments)} failed: {result}");
        }
    }

    private static ToolResult Expect(ToolResult result, string what) =>
        result.ExitCode == 0 ? result : throw new InvalidOperationException($"{what} failed: {result}");
}
