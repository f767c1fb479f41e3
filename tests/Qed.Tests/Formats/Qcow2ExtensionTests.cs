using System.Buffers.Binary;
using System.Text.Json;
using Qed.Formats.Qcow2;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Formats;

/// <summary>The qcow2 header extensions and backing name (rules 24-27 of QCOW2.md §2.3) against images qemu-img makes and against its refusals of poked ones.</summary>
public sealed class Qcow2ExtensionTests
{
    private static (Qcow2Header Header, byte[] Cluster0) ReadCluster0(string path)
    {
        byte[] file = File.ReadAllBytes(path);
        var header = Qcow2Header.Parse(file.AsSpan(0, Math.Min(file.Length, Qcow2Header.ReadLength)));
        header.Validate(forWriting: false);
        byte[] cluster0 = new byte[header.ClusterSize];
        file.AsSpan(0, (int)Math.Min(file.Length, header.ClusterSize)).CopyTo(cluster0);
        return (header, cluster0);
    }

    private static JsonElement InfoJson(string dir, string file, params string[] extra)
    {
        var arguments = new List<string> { "info", "--output=json" };
        arguments.AddRange(extra);
        arguments.Add(file);
        using var info = JsonDocument.Parse(Tools.QemuImg(dir, [.. arguments]).StdOut);
        return info.RootElement.Clone();
    }

    [Theory]
    [InlineData("qcow2", "compat=1.1")]
    [InlineData("raw", "compat=1.1")]
    [InlineData("qcow2", "compat=0.10")]
    [InlineData("qed", "cluster_size=4k")]
    public void Backing_name_and_format_agree_with_qemu_img_info(string baseFormat, string options)
    {
        using var dir = new TempDirectory();
        Tools.QemuImg(dir.Path, "create", "-q", "-f", baseFormat, "base.img", "4M");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "-o", options, "-b", "base.img", "-F", baseFormat, "x.qcow2");
        var (header, cluster0) = ReadCluster0(dir.File("x.qcow2"));
        var extensions = Qcow2Extensions.Parse(cluster0, header);
        string? name = extensions.ReadBackingName(cluster0, header, metadataOnly: false);

        var info = InfoJson(dir.Path, "x.qcow2");
        Assert.Equal(info.GetProperty("backing-filename").GetString(), name);
        Assert.Equal(info.GetProperty("backing-filename-format").GetString(), extensions.BackingFormat);
        Assert.Empty(extensions.UnknownTypes);
        Assert.Null(extensions.DataFileName);
        Assert.Null(extensions.CryptoHeader);
    }

    [Fact]
    public void Feature_table_of_a_fresh_v3_image_names_the_eight_bits()
    {
        using var dir = new TempDirectory();
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "x.qcow2", "64M");
        var (header, cluster0) = ReadCluster0(dir.File("x.qcow2"));
        var names = Qcow2Extensions.Parse(cluster0, header).FeatureNames;
        // QCOW2.md §10.2: the table QEMU writes, in its order.
        Assert.Equal(
            [
                new(Qcow2FeatureKind.Incompatible, 0, "dirty bit"), new(Qcow2FeatureKind.Incompatible, 1, "corrupt bit"),
                new(Qcow2FeatureKind.Incompatible, 2, "external data file"), new(Qcow2FeatureKind.Incompatible, 3, "compression type"),
                new(Qcow2FeatureKind.Incompatible, 4, "extended L2 entries"), new(Qcow2FeatureKind.Compatible, 0, "lazy refcounts"),
                new(Qcow2FeatureKind.Autoclear, 0, "bitmaps"), new Qcow2FeatureName(Qcow2FeatureKind.Autoclear, 1, "raw external data"),
            ],
            names);
    }

    [Fact]
    public void Data_file_name_agrees_with_qemu_img_info_and_is_not_opened()
    {
        using var dir = new TempDirectory();
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "-o", "data_file=x.data", "x.qcow2", "16M");
        var (header, cluster0) = ReadCluster0(dir.File("x.qcow2"));
        var extensions = Qcow2Extensions.Parse(cluster0, header);
        var data = InfoJson(dir.Path, "x.qcow2").GetProperty("format-specific").GetProperty("data");
        Assert.Equal(data.GetProperty("data-file").GetString(), extensions.DataFileName);
        Assert.True((header.IncompatibleFeatures & Qcow2IncompatibleFeatures.ExternalDataFile) != 0);
    }

    [Fact]
    public void Luks_header_pointer_agrees_with_qemu_img_info()
    {
        using var dir = new TempDirectory();
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "--object", "secret,id=s0,data=qcow2-test",
            "-o", "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10", "x.qcow2", "16M");
        var (header, cluster0) = ReadCluster0(dir.File("x.qcow2"));
        var extensions = Qcow2Extensions.Parse(cluster0, header);
        var info = InfoJson(dir.Path, "x.qcow2");
        Assert.True(info.GetProperty("encrypted").GetBoolean());
        var crypto = Assert.NotNull(extensions.CryptoHeader);
        // The LUKS payload starts where its header area ends: the extension's length.
        Assert.Equal(info.GetProperty("format-specific").GetProperty("data").GetProperty("encrypt").GetProperty("payload-offset").GetInt64(), (long)crypto.Length);
        Assert.Equal(0UL, crypto.Offset % (ulong)header.ClusterSize);
        Assert.Equal(2u, header.CryptMethod);
    }

    [Fact]
    public void Bitmaps_extension_agrees_with_qemu_img_info()
    {
        using var dir = new TempDirectory();
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "x.qcow2", "64M");
        Tools.QemuImg(dir.Path, "bitmap", "--add", "x.qcow2", "b0");
        Tools.QemuImg(dir.Path, "bitmap", "--add", "x.qcow2", "b1");
        var (header, cluster0) = ReadCluster0(dir.File("x.qcow2"));
        var bitmaps = Assert.NotNull(Qcow2Extensions.Parse(cluster0, header).Bitmaps);
        var listed = InfoJson(dir.Path, "x.qcow2").GetProperty("format-specific").GetProperty("data").GetProperty("bitmaps");
        Assert.Equal(listed.GetArrayLength(), (int)bitmaps.Count);
        Assert.Equal(0UL, bitmaps.DirectoryOffset % (ulong)header.ClusterSize);
        Assert.True(bitmaps.DirectoryOffset > 0 && bitmaps.DirectorySize > 0);

        // Autoclear bit 0 cleared: QEMU no longer lists the bitmaps, and neither extension is in use here.
        Tools.Poke(dir.File("x.qcow2"), 88, new byte[8]);
        (header, cluster0) = ReadCluster0(dir.File("x.qcow2"));
        var stale = Qcow2Extensions.Parse(cluster0, header);
        Assert.Null(stale.Bitmaps);
        Assert.True(stale.HasStaleBitmaps);
        Assert.False(InfoJson(dir.Path, "x.qcow2", "-U").GetProperty("format-specific").GetProperty("data").TryGetProperty("bitmaps", out _));
    }

    /// <summary>A poke: offset, value, width in bytes (1, 4 or 8; big-endian).</summary>
    public readonly record struct Poke(long Offset, ulong Value, int Width);

    /// <summary>
    /// Hostile extensions on a fresh 64 MiB v3 image with one bitmap (feature table at 0x70, 384 bytes; bitmaps extension
    /// at 0x1f8, 24 bytes; end marker at 0x218): qemu-img's refusal, read at test time, is our message.
    /// </summary>
    public static TheoryData<string, Poke[]> ExtensionPokes => new()
    {
        { "bitmaps length 16", [new(0x1fc, 16, 4)] },
        { "bitmaps reserved field", [new(0x204, 1, 4)] },
        { "zero bitmaps", [new(0x200, 0, 4)] },
        { "65536 bitmaps", [new(0x200, 65536, 4)] },
        { "bitmap directory unaligned", [new(0x210, 0x50001, 8)] },
        { "bitmap directory too large", [new(0x208, 67107841, 8)] },
        { "extension beyond the cluster", [new(0x1fc, 0x10000, 4)] },
        { "feature table beyond the cluster", [new(0x74, 0xff90, 4)] },
        { "backing format of 16 bytes", [new(0x1f8, 0xE2792ACA, 4), new(0x1fc, 16, 4)] },
        { "crypto extension without LUKS", [new(0x1f8, 0x0537BE77, 4), new(0x1fc, 16, 4)] },
        { "crypto extension of 24 bytes", [new(0x1f8, 0x0537BE77, 4), new(0x1fc, 24, 4), new(0x20, 2, 4)] },
        { "crypto header unaligned", [new(0x1f8, 0x0537BE77, 4), new(0x1fc, 16, 4), new(0x200, 0x40200, 8), new(0x20, 2, 4)] },
        { "extension area ends inside an extension header", [new(8, 0x1fc, 8), new(16, 4, 4)] },
        { "extension area ends inside the end marker", [new(8, 0x21c, 8), new(16, 4, 4)] },
        { "backing name of 1024 bytes", [new(8, 0x220, 8), new(16, 1024, 4)] },
        { "backing name past the cluster", [new(8, 0xfff0, 8), new(16, 17, 4)] },
        { "LUKS without its extension", [new(0x20, 2, 4)] },
    };

    [Theory]
    [MemberData(nameof(ExtensionPokes))]
    public void Refusals_match_qemu_img(string name, Poke[] pokes)
    {
        using var dir = new TempDirectory();
        string path = dir.File("x.qcow2");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "x.qcow2", "64M");
        Tools.QemuImg(dir.Path, "bitmap", "--add", "x.qcow2", "b0");
        Apply(path, pokes);

        // convert, not info: info skips the LUKS rule (and QEMU 7.2's info crashes on it, QCOW2.md §15).
        var qemu = Tools.QemuImgRaw(dir.Path, "convert", "-f", "qcow2", "-O", "raw", "x.qcow2", "out.raw");
        Assert.True(qemu.ExitCode == 1, $"{name}: qemu-img accepted the image: {qemu}");
        string prefix = "qemu-img: Could not open 'x.qcow2': ";
        string qemuLine = qemu.StdErr.Split('\n')[0];
        Assert.StartsWith(prefix, qemuLine);

        var (header, cluster0) = ReadCluster0(path);
        var e = Assert.ThrowsAny<QedException>(() => Qcow2Extensions.Parse(cluster0, header).ReadBackingName(cluster0, header, metadataOnly: false));
        Assert.Equal(qemuLine[prefix.Length..], e.Message);
    }

    [Fact]
    public void Luks_without_its_extension_is_accepted_for_metadata()
    {
        using var dir = new TempDirectory();
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "x.qcow2", "64M");
        Apply(dir.File("x.qcow2"), [new(0x20, 2, 4)]);
        var (header, cluster0) = ReadCluster0(dir.File("x.qcow2"));
        Assert.Null(Qcow2Extensions.Parse(cluster0, header).ReadBackingName(cluster0, header, metadataOnly: true));
    }

    /// <summary>Rule 10 names unknown incompatible bits from the image's own feature table, as QEMU does, even when a later extension is broken.</summary>
    public static TheoryData<string, Poke[]> FeaturePokes => new()
    {
        { "bits 5 and 6, none named", [new(0x48, 0x60, 8)] },
        { "bit 5 named by the third entry", [new(0x48, 0x20, 8), new(0xd9, 5, 1)] },
        { "bits 5 and 6, bit 5 named", [new(0x48, 0x60, 8), new(0xd9, 5, 1)] },
        { "bit 5 named twice", [new(0x48, 0x20, 8), new(0xd9, 5, 1), new(0x109, 5, 1)] },
        { "bit 5 named after an empty name", [new(0x48, 0x20, 8), new(0x109, 5, 1), new(0xaa, 0, 1)] },
        { "bit 5 named by a compatible entry", [new(0x48, 0x20, 8), new(0x169, 5, 1)] },
        { "bit 5 named, then a broken extension", [new(0x48, 0x20, 8), new(0xd9, 5, 1), new(0x1f8, 0x1234, 4), new(0x1fc, 0x10000, 4)] },
        { "bit 63", [new(0x48, 0x8000000000000000, 8)] },
    };

    [Theory]
    [MemberData(nameof(FeaturePokes))]
    public void Unknown_feature_messages_match_qemu_img(string name, Poke[] pokes)
    {
        using var dir = new TempDirectory();
        string path = dir.File("x.qcow2");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "x.qcow2", "64M");
        Apply(path, pokes);
        var qemu = Tools.QemuImgRaw(dir.Path, "info", "x.qcow2");
        Assert.True(qemu.ExitCode == 1, $"{name}: qemu-img accepted the image: {qemu}");
        string prefix = "qemu-img: Could not open 'x.qcow2': ";
        string qemuLine = qemu.StdErr.Split('\n')[0];

        byte[] file = File.ReadAllBytes(path);
        var header = Qcow2Header.Parse(file.AsSpan(0, Qcow2Header.ReadLength));
        ulong unknown = (ulong)(header.IncompatibleFeatures & ~Qcow2IncompatibleFeatures.Known);
        string ours = Qcow2Extensions.UnsupportedFeatureMessage(Qcow2Extensions.ReadFeatureNames(file.AsSpan(0, (int)header.ClusterSize), header), unknown);
        Assert.Equal(qemuLine, prefix + ours);
    }

    private static void Apply(string path, Poke[] pokes)
    {
        foreach (var poke in pokes)
        {
            byte[] bytes = new byte[poke.Width];
            switch (poke.Width)
            {
                case 1: bytes[0] = (byte)poke.Value; break;
                case 4: BinaryPrimitives.WriteUInt32BigEndian(bytes, (uint)poke.Value); break;
                default: BinaryPrimitives.WriteUInt64BigEndian(bytes, poke.Value); break;
            }
            Tools.Poke(path, poke.Offset, bytes);
        }
    }
}
