using Qed.Check;
using Qed.Formats;
using Qed.Image;
using Qed.IO;
using Qed.Tests.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Formats;

/// <summary>The format registry: the probe of each signature, names, the refusals of formats we cannot read, and the capability queries the CLI relies on.</summary>
public class RegistryTests
{
    /// <summary>(format, a file start that carries its signature): every registered signature once.</summary>
    private static readonly (string Format, byte[] Head)[] s_signatures =
    [
        ("qed", "QED\0"u8.ToArray()),
        ("qcow2", [(byte)'Q', (byte)'F', (byte)'I', 0xfb, 0, 0, 0, 3]),
        ("qcow2", [(byte)'Q', (byte)'F', (byte)'I', 0xfb, 0, 0, 0, 2]),
        ("qcow", [(byte)'Q', (byte)'F', (byte)'I', 0xfb, 0, 0, 0, 1]),
        ("vmdk", "KDMV"u8.ToArray()),
        ("vmdk", "# Disk DescriptorFile\n"u8.ToArray()),
        ("vdi", [.. "<<< Oracle VM VirtualBox Disk Image >>>\n"u8.ToArray(), .. new byte[24], 0x7f, 0x10, 0xda, 0xbe]),
        ("vhdx", "vhdxfile"u8.ToArray()),
        ("vpc", "conectix"u8.ToArray()),
        ("raw", []),
        ("raw", "QEDX"u8.ToArray()),
        ("raw", "QFI"u8.ToArray()),
    ];

    [Fact]
    public void Probe_RecognisesEverySignature_AndCallsTheRestRaw()
    {
        int ran = 0;
        foreach (var (format, head) in s_signatures)
        {
            byte[] padded = new byte[ImageFormats.ProbeLength];
            head.CopyTo(padded, 0);
            Assert.Equal(format, ImageFormats.Probe(padded).Name);
            ran++;
        }
        Assert.Equal(12, ran);
        // Every registered format except raw (the fallback) is covered above.
        Assert.Equal(ImageFormats.All.Select(f => f.Name).Distinct().Order(), s_signatures.Select(s => s.Format).Distinct().Order());
    }

    [Fact]
    public void Probe_OfAFile_ReadsItsStart()
    {
        using var dir = new TempDirectory();
        Img.Create(dir.File("a.qed"), Img.MiB);
        File.WriteAllBytes(dir.File("short"), [1, 2, 3]);
        Assert.Same(ImageFormats.Qed, ImageFormats.Probe(dir.File("a.qed")));
        Assert.Same(ImageFormats.Raw, ImageFormats.Probe(dir.File("short")));
    }

    [Fact]
    public void Names_AreQemuImgsSpellings_AndUnique()
    {
        Assert.Equal(["qed", "qcow2", "qcow", "vmdk", "vdi", "vhdx", "vpc", "raw"], ImageFormats.All.Select(f => f.Name));
        Assert.Same(ImageFormats.Qed, ImageFormats.Find("qed"));
        Assert.Same(ImageFormats.Raw, ImageFormats.Find("raw"));
        Assert.Null(ImageFormats.Find("QED")); // qemu-img's -f is case-sensitive
        Assert.Null(ImageFormats.Find("qcow5"));
        Assert.Same(ImageFormats.Raw, ImageFormats.All[^1]); // the fallback is probed last
    }

    [Fact]
    public void Capabilities_SayWhatEachFormatCanDo()
    {
        var qed = ImageFormats.Qed;
        Assert.True(qed.CanOpen && qed.CanWrite && qed.CanCreate && qed.SupportsBackingFile && qed.CanCheck && qed.GrowsFile);
        var raw = ImageFormats.Raw;
        Assert.True(raw.CanOpen && raw.CanWrite && raw.CanCreate);
        Assert.False(raw.SupportsBackingFile || raw.CanCheck || raw.GrowsFile);
        // qcow2 opens read-only (QCOW2.md): never writable; what it creates and checks is its writer's and checker's to say.
        Assert.True(ImageFormats.Qcow2.CanOpen);
        Assert.False(ImageFormats.Qcow2.CanWrite);
        var foreign = ImageFormats.All.Where(f => !f.CanOpen).ToArray();
        Assert.Equal(["qcow", "vmdk", "vdi", "vhdx", "vpc"], foreign.Select(f => f.Name));
        Assert.All(foreign, f => Assert.False(f.CanWrite || f.CanCreate || f.CanCheck || f.SupportsBackingFile));
        Assert.Equal(["size", "backing_file", "backing_fmt", "cluster_size", "table_size"], qed.CreateOptions.Select(o => o.Name));
        Assert.Equal(["size"], raw.CreateOptions.Select(o => o.Name));
    }

    [Theory]
    [InlineData("qcow5")]
    [InlineData("vmdk")]
    [InlineData("QED")]
    public void UnknownOrUnreadableName_IsRefusedBeforeTheFileIsOpened(string name)
    {
        using var dir = new TempDirectory();
        var e = Assert.Throws<QedUnsupportedException>(() => DiskImage.Open(dir.File("missing"), name));
        Assert.Equal($"Unknown driver '{name}': this library reads QED, qcow2 and raw images", e.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ProbedForeignFormat_IsRefusedByName(bool useAsync)
    {
        using var dir = new TempDirectory();
        string path = dir.File("disk.vhdx");
        File.WriteAllBytes(path, [.. "vhdxfile"u8.ToArray(), .. new byte[4096]]);
        var e = await Assert.ThrowsAsync<QedUnsupportedException>(async () =>
        {
            await using var device = useAsync ? await DiskImage.OpenAsync(path) : DiskImage.Open(path);
        });
        Assert.Equal($"'{path}' is a vhdx image, which this library does not read (it reads QED, qcow2 and raw images)", e.Message);
    }

    [Fact]
    public void Of_NamesTheFormatOfAnOpenDevice()
    {
        using var dir = new TempDirectory();
        Img.Create(dir.File("a.qed"), Img.MiB);
        File.WriteAllBytes(dir.File("b.raw"), new byte[4096]);
        using var qed = DiskImage.Open(dir.File("a.qed"));
        using var raw = DiskImage.Open(dir.File("b.raw"));
        Assert.Same(ImageFormats.Qed, ImageFormats.Of(qed));
        Assert.Same(ImageFormats.Raw, ImageFormats.Of(raw));
    }

    [Fact]
    public void Describe_GivesWhatInfoPrints()
    {
        using var dir = new TempDirectory();
        File.WriteAllBytes(dir.File("six.raw"), new byte[6]);
        Img.Create(dir.File("o.qed"), 3 * Img.MiB, 4096, 2, backing: "six.raw", backingFormat: "raw");
        using (var raw = ImageFormats.Raw.Open(dir.File("six.raw"), new ImageOpenOptions { ReadOnly = true }))
        {
            // QEMU counts raw files in whole sectors.
            Assert.Equal(new ImageDescription { Format = "raw", VirtualSize = 512 }, ImageFormats.Raw.Describe(raw));
        }
        using var qed = ImageFormats.Qed.Open(dir.File("o.qed"), new ImageOpenOptions { ReadOnly = true, NoBacking = true });
        Assert.Equal(new ImageDescription
        {
            Format = "qed",
            VirtualSize = 3 * Img.MiB,
            ClusterSize = 4096,
            BackingFileName = "six.raw",
            BackingFilePath = dir.File("six.raw"),
            BackingFormat = "raw",
        }, ImageFormats.Qed.Describe(qed));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Check_RunsThroughTheFormat_AndRawHasNone(bool useAsync)
    {
        using var dir = new TempDirectory();
        Img.Create(dir.File("a.qed"), Img.MiB);
        File.WriteAllBytes(dir.File("b.raw"), new byte[4096]);
        await using (var qed = DiskImage.Open(dir.File("a.qed"), options: new ImageOpenOptions { ReadOnly = true }))
        {
            var result = useAsync ? await ImageFormats.Qed.CheckAsync(qed) : ImageFormats.Qed.Check(qed);
            Assert.True(result.IsClean);
            Assert.Equal(16, result.TotalClusters);
        }
        await using var raw = DiskImage.Open(dir.File("b.raw"), options: new ImageOpenOptions { ReadOnly = true });
        Assert.Throws<QedUnsupportedException>(() => ImageFormats.Raw.Check(raw, RepairMode.All));
        Assert.Null(ImageFormats.Raw.GetCacheStatistics(raw));
        Assert.Throws<ArgumentException>(() => ImageFormats.Qed.Describe(raw));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Create_TakesTheFormatsOptionsByQemuImgsNames(bool useAsync)
    {
        using var dir = new TempDirectory();
        var options = new ImageCreateOptions { Size = 1000, Settings = new Dictionary<string, long> { ["cluster_size"] = 4096, ["table_size"] = 1 } };
        if (useAsync)
        {
            await ImageFormats.Qed.CreateAsync(dir.File("a.qed"), options);
            await ImageFormats.Raw.CreateAsync(dir.File("b.raw"), new ImageCreateOptions { Size = 1000 });
        }
        else
        {
            ImageFormats.Qed.Create(dir.File("a.qed"), options);
            ImageFormats.Raw.Create(dir.File("b.raw"), new ImageCreateOptions { Size = 1000 });
        }
        var header = Img.FileHeader(dir.File("a.qed"));
        Assert.Equal((4096u, 1u, 1024UL), (header.ClusterSize, header.TableSize, header.ImageSize));
        Assert.Equal(["QEMU 7.2 cannot open images with table_size=1 (it rejects every table offset); qed can"], ImageFormats.Qed.CompatibilityWarnings(options));
        Assert.Equal(1024, new FileInfo(dir.File("b.raw")).Length);
    }

    [Fact]
    public void Create_RefusesWhatTheFormatCannotTake_WithoutWriting()
    {
        using var dir = new TempDirectory();
        string path = dir.File("x");
        var bad = new (ImageFormat Format, ImageCreateOptions Options, string Message)[]
        {
            (ImageFormats.Qed, new() { Size = 0, Settings = new Dictionary<string, long> { ["cluster_size"] = 1L << 40 } }, "QED cluster size must be within range [4096, 67108864] and power of 2 (cluster_size 1099511627776)"),
            (ImageFormats.Qed, new() { Size = 0, Settings = new Dictionary<string, long> { ["table_size"] = 3 } }, "QED table size must be within range [1, 16] and power of 2 (table_size 3)"),
            (ImageFormats.Qed, new() { Size = 0, Settings = new Dictionary<string, long> { ["preallocation"] = 1 } }, "Invalid parameter 'preallocation'"),
            (ImageFormats.Raw, new() { Size = 0, BackingFile = "b" }, "Backing file not supported for file format 'raw'"),
            (ImageFormats.Raw, new() { Size = 0, Settings = new Dictionary<string, long> { ["cluster_size"] = 4096 } }, "Invalid parameter 'cluster_size'"),
        };
        foreach (var (format, options, message) in bad)
        {
            Assert.Equal(message, Assert.ThrowsAny<QedException>(() => format.Validate(options)).Message);
            Assert.Equal(message, Assert.ThrowsAny<QedException>(() => format.Create(path, options)).Message);
            Assert.False(File.Exists(path));
        }
        Assert.Equal(5, bad.Length);
        Assert.Throws<QedUnsupportedException>(() => ImageFormats.Find("vdi")!.Create(path, new ImageCreateOptions { Size = 0 }));
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Locks_FollowTheFormat()
    {
        var writable = new ImageOpenOptions();
        Assert.Equal(new ImageLockSet(ImagePermissions.ConsistentRead | ImagePermissions.Write | ImagePermissions.Resize, ImagePermissions.Write | ImagePermissions.Resize),
            ImageLockSet.ForOpen(ImageFormats.Qed, writable));
        Assert.Equal(new ImageLockSet(ImagePermissions.ConsistentRead | ImagePermissions.Write, ImagePermissions.None), ImageLockSet.ForOpen(ImageFormats.Raw, writable));
    }
}
