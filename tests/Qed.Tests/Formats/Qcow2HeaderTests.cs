using System.Buffers.Binary;
using System.Text.Json;
using Qed.Formats.Qcow2;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Formats;

/// <summary>The qcow2 header reader against images qemu-img creates and against qemu-img's refusals of poked headers.</summary>
public sealed class Qcow2HeaderTests
{
    public static TheoryData<string> CreateOptions => new()
    {
        "compat=0.10",
        "compat=1.1",
        "cluster_size=512",
        "cluster_size=2M",
        "refcount_bits=1",
        "refcount_bits=64",
        "extended_l2=on",
        "compression_type=zstd",
        "lazy_refcounts=on",
    };

    /// <summary>Every field qemu-img info reports from the header agrees with what the reader parsed.</summary>
    [Theory]
    [MemberData(nameof(CreateOptions))]
    public void Fields_agree_with_qemu_img_info(string options)
    {
        using var dir = new TempDirectory();
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "-o", options, "x.qcow2", "1G");
        var header = Qcow2Header.Parse(File.ReadAllBytes(dir.File("x.qcow2")).AsSpan(0, Qcow2Header.ReadLength));
        header.Validate(forWriting: true);

        using var info = JsonDocument.Parse(Tools.QemuImg(dir.Path, "info", "--output=json", "x.qcow2").StdOut);
        var root = info.RootElement;
        var data = root.GetProperty("format-specific").GetProperty("data");
        Assert.Equal(root.GetProperty("virtual-size").GetInt64(), (long)header.Size);
        Assert.Equal(root.GetProperty("cluster-size").GetInt64(), header.ClusterSize);
        Assert.Equal(data.GetProperty("compat").GetString(), header.Version == 2 ? "0.10" : "1.1");
        if (header.Version == 3)
        {
            Assert.Equal(data.GetProperty("refcount-bits").GetInt32(), header.RefcountBits);
            Assert.Equal(data.GetProperty("extended-l2").GetBoolean(), header.ExtendedL2);
            Assert.Equal(data.GetProperty("compression-type").GetString(), header.CompressionType == 0 ? "zlib" : "zstd");
        }
        else
        {
            Assert.Equal(16, header.RefcountBits);
            Assert.Equal(72u, header.HeaderLength);
        }
    }

    /// <summary>One poked field per rule of QCOW2.md §2.3: qemu-img's refusal (at test time) is our message.</summary>
    public static TheoryData<string, int, ulong, int> Pokes => new()
    {
        // name, offset, value, width in bytes
        { "version 4", 4, 4, 4 },
        { "cluster_bits 22", 20, 22, 4 },
        { "cluster_bits 8", 20, 8, 4 },
        { "header_length 100", 100, 100, 4 },
        { "header_length above the cluster", 100, 131072, 4 },
        { "backing_file_offset beyond the cluster", 8, 65537, 8 },
        { "compression type 2", 104, 2, 1 },
        { "compression bit without type", 72, 8, 8 },
        { "unknown incompatible bit", 72, 0x20, 8 },
        { "refcount_order 7", 96, 7, 4 },
        { "no refcount table", 56, 0, 4 },
        { "refcount table too large", 56, 129, 4 },
        { "refcount table unaligned", 48, 0x10200, 8 },
        { "too many snapshots", 60, 65537, 4 },
        { "L1 too large", 36, 0x400001, 4 },
        { "L1 unaligned", 40, 0x30008, 8 },
        { "L1 too small", 36, 1, 4 },
        { "encryption 3", 32, 3, 4 },
    };

    [Theory]
    [MemberData(nameof(Pokes))]
    public void Refusals_match_qemu_img(string name, int offset, ulong value, int width)
    {
        using var dir = new TempDirectory();
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "x.qcow2", "8G");
        byte[] bytes = new byte[width];
        switch (width)
        {
            case 1: bytes[0] = (byte)value; break;
            case 4: BinaryPrimitives.WriteUInt32BigEndian(bytes, (uint)value); break;
            default: BinaryPrimitives.WriteUInt64BigEndian(bytes, value); break;
        }
        Tools.Poke(dir.File("x.qcow2"), offset, bytes);

        var qemu = Tools.QemuImgRaw(dir.Path, "info", "-f", "qcow2", "x.qcow2");
        Assert.True(qemu.ExitCode == 1, $"{name}: qemu-img info accepted the image: {qemu}");
        string prefix = "qemu-img: Could not open 'x.qcow2': ";
        string qemuLine = qemu.StdErr.TrimEnd('\n');
        Assert.StartsWith(prefix, qemuLine);

        var header = Qcow2Header.Parse(File.ReadAllBytes(dir.File("x.qcow2")).AsSpan(0, Qcow2Header.ReadLength));
        var e = Assert.ThrowsAny<QedException>(() => header.Validate(forWriting: false));
        Assert.Equal(qemuLine[prefix.Length..], e.Message);
    }

    [Fact]
    public void Other_magic_is_refused_with_qemu_s_wording()
    {
        var e = Assert.Throws<QedFormatException>(() => Qcow2Header.Parse("QED\0"u8));
        Assert.Equal("Image is not in qcow2 format", e.Message);
        // Version 1 with the magic is the old qcow format, not qcow2 (QCOW2.md §2.4).
        Assert.False(Qcow2Header.IsQcow2([0x51, 0x46, 0x49, 0xFB, 0, 0, 0, 1]));
        Assert.True(Qcow2Header.IsQcow2([0x51, 0x46, 0x49, 0xFB, 0, 0, 0, 2]));
    }

    [Fact]
    public void A_corrupt_image_opens_only_read_only()
    {
        var header = new Qcow2Header
        {
            Version = 3, ClusterBits = 16, HeaderLength = 112, RefcountOrder = 4, RefcountTableClusters = 1,
            RefcountTableOffset = 0x10000, L1Size = 1, L1TableOffset = 0x30000, Size = 1 << 20,
            IncompatibleFeatures = Qcow2IncompatibleFeatures.Corrupt,
        };
        header.Validate(forWriting: false);
        var e = Assert.Throws<QedFormatException>(() => header.Validate(forWriting: true));
        Assert.Equal("qcow2: Image is corrupt; cannot be opened read/write", e.Message);
    }
}
