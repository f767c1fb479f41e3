using System.Buffers.Binary;
using Qed.Formats;
using Qed.Formats.Qcow2;
using Qed.Image;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Formats;

/// <summary>
/// Reads of qcow2 images with poked L1/L2 entries: where QEMU refuses the read, we refuse it with QEMU's description of
/// the entry (its "Image is corrupt: ..." text, read at test time); where QEMU reads (entries beyond the end of the file),
/// we read the same bytes. The file never changes.
/// </summary>
public sealed class Qcow2ReadCorruptionTests
{
    private const string CorruptPrefix = "qcow2: Image is corrupt: ";
    private const string CorruptSuffix = "; further non-fatal corruption events will be suppressed";

    private static (long L1, long L2) Tables(string path)
    {
        byte[] file = File.ReadAllBytes(path);
        var header = Qcow2Header.Parse(file.AsSpan(0, Qcow2Header.ReadLength));
        long l1 = (long)header.L1TableOffset;
        long l2 = (long)(BinaryPrimitives.ReadUInt64BigEndian(file.AsSpan((int)l1)) & Qcow2L2Entry.OffsetMask);
        return (l1, l2);
    }

    private static ulong ReadU64(string path, long offset)
    {
        byte[] file = File.ReadAllBytes(path);
        return BinaryPrimitives.ReadUInt64BigEndian(file.AsSpan((int)offset));
    }

    private static void PokeU64(string path, long offset, ulong value)
    {
        byte[] bytes = new byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(bytes, value);
        Tools.Poke(path, offset, bytes);
    }

    /// <summary>fixture, what is poked: the entry (L1[0], L2[0] or its bitmap) and how.</summary>
    public static TheoryData<string, string> Refused => new()
    {
        { "Q02", "L1[0] unaligned" },
        { "Q02", "L2[0] data offset unaligned" },
        { "Q09", "L2[32] zero-alloc offset unaligned" },
        { "Q01", "L2[0] zero flag in a v2 image" },
        { "Q06", "L2[0] bitmap allocated and zero" },
        { "Q06", "L2[1] unallocated with allocated subclusters" },
        { "Q17", "L2[1] data file offset differs from the guest offset" },
        { "Q17", "L2[1] compressed in an image with a data file" },
    };

    [Theory]
    [MemberData(nameof(Refused))]
    public async Task Invalid_entries_fail_the_read_with_qemu_s_description(string fixture, string poke)
    {
        using var dir = new TempDirectory();
        string path = Qcow2Fixtures.CopyTo(fixture, dir.Path);
        var (l1, l2) = Tables(path);
        int entrySize = fixture == "Q06" ? 16 : 8;
        switch (poke)
        {
            case "L1[0] unaligned": PokeU64(path, l1, ReadU64(path, l1) + 0x200); break;
            case "L2[0] data offset unaligned": PokeU64(path, l2, ReadU64(path, l2) + 0x200); break;
            case "L2[32] zero-alloc offset unaligned": PokeU64(path, l2 + 32 * 8, ReadU64(path, l2 + 32 * 8) + 0x200); break;
            case "L2[0] zero flag in a v2 image": PokeU64(path, l2, ReadU64(path, l2) | 1); break;
            case "L2[0] bitmap allocated and zero": PokeU64(path, l2 + 8, ReadU64(path, l2 + 8) | (1UL << 40) | (1UL << 8)); break;
            case "L2[1] unallocated with allocated subclusters": PokeU64(path, l2 + entrySize, 0); PokeU64(path, l2 + entrySize + 8, 1); break;
            case "L2[1] data file offset differs from the guest offset": PokeU64(path, l2 + 8, ReadU64(path, l2 + 8) + 0x10000); break;
            default: PokeU64(path, l2 + 8, Qcow2L2Entry.CompressedFlag | 0x10000); break;
        }
        string before = Tools.Sha256OfFile(path);
        // Q17 names its data file relative to the current directory: qemu-img runs there; we read without the data file.
        var qemu = Tools.QemuImgRaw(dir.Path, "convert", "-f", "qcow2", "-O", "raw", Path.GetFileName(path), "out.raw");
        Assert.True(qemu.ExitCode == 1, $"{poke}: qemu-img read the image: {qemu}");
        string line = qemu.StdErr.Split('\n').Single(l => l.StartsWith(CorruptPrefix, StringComparison.Ordinal));
        string expected = line[CorruptPrefix.Length..^CorruptSuffix.Length];

        var options = new ImageOpenOptions { ReadOnly = true };
        if (fixture == "Q17")
        {
            // The data file is only opened relative to the process's directory; the metadata alone maps the entries.
            options = options with { MetadataOnly = true };
        }
        using (var device = ImageFormats.Qcow2.Open(path, options))
        {
            var e = Assert.Throws<QedCorruptionException>(() => DeviceDigest.Sha256(device));
            Assert.Equal(expected, e.Message);
        }
        await using (var device = await ImageFormats.Qcow2.OpenAsync(path, options))
        {
            byte[] buffer = new byte[device.Size];
            var e = await Assert.ThrowsAsync<QedCorruptionException>(async () => await device.ReadAsync(buffer, 0));
            Assert.Equal(expected, e.Message);
        }
        Assert.Equal(before, Tools.Sha256OfFile(path));
    }

    [Theory]
    [InlineData("Q02", "L2[0] beyond the end of the file")]
    [InlineData("Q02", "L1[1] beyond the end of the file")]
    [InlineData("Q03", "L1 table beyond the end of the file")]
    [InlineData("Q07", "compressed descriptor beyond the end of the file")]
    public void Entries_beyond_the_end_of_the_file_read_as_qemu_reads_them(string fixture, string poke)
    {
        using var dir = new TempDirectory();
        string path = Qcow2Fixtures.CopyTo(fixture, dir.Path);
        var (l1, l2) = Tables(path);
        switch (poke)
        {
            case "L2[0] beyond the end of the file": PokeU64(path, l2, Qcow2L2Entry.CopiedFlag | (1UL << 30)); break;
            case "L1[1] beyond the end of the file": PokeU64(path, l1 + 8, Qcow2L2Entry.CopiedFlag | (1UL << 40)); break;
            case "L1 table beyond the end of the file": PokeU64(path, 40, 1UL << 32); break;
            default: PokeU64(path, l2, Qcow2L2Entry.CompressedFlag | (1UL << 40)); break;
        }
        var qemu = Tools.QemuImgRaw(dir.Path, "convert", "-f", "qcow2", "-O", "raw", Path.GetFileName(path), "out.raw");
        using var device = ImageFormats.Qcow2.Open(path, new ImageOpenOptions { ReadOnly = true });
        if (qemu.ExitCode == 0)
        {
            Assert.Equal(Tools.Sha256OfFile(dir.File("out.raw")), DeviceDigest.Sha256(device));
        }
        else
        {
            // Zeros do not inflate: QEMU fails with EIO, we with a line naming the problem.
            Assert.Contains("Input/output error", qemu.StdErr, StringComparison.Ordinal);
            Assert.ThrowsAny<QedException>(() => DeviceDigest.Sha256(device));
        }
    }
}
