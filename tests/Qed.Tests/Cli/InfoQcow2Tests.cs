using System.Text.Json;
using Qed.Cli.Output;
using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed info</c> on qcow2 against <c>qemu-img info</c>, human and JSON, byte for byte: the §16 fixtures and images
/// with what the fixtures lack (bitmaps, AES, a dirty overlay, odd snapshot entries).
/// </summary>
public sealed class InfoQcow2Tests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>The images beyond the fixtures, by name.</summary>
    private static readonly string[] s_extras = ["bitmaps", "aes", "dirty-overlay", "odd-snapshots"];

    public static TheoryData<string> Images() => [.. Qcow2Fixtures.All.Select(f => f.Name), .. s_extras];

    /// <summary>Makes the image named <paramref name="name"/> (a fixture: a copy of it) and returns its file name; the working directory is the test's.</summary>
    private string Make(string name)
    {
        if (name.StartsWith('Q'))
        {
            return Path.GetFileName(Qcow2Fixtures.CopyTo(name, _dir.Path));
        }
        string d = _dir.Path;
        string file = name + ".qcow2";
        switch (name)
        {
            case "bitmaps":
                Tools.QemuImg(d, "create", "-q", "-f", "qcow2", "-o", "data_file=bitmaps.data,data_file_raw=on", file, "1M");
                Tools.QemuImg(d, "bitmap", "--add", file, "bm0");
                Tools.QemuImg(d, "bitmap", "--add", "-g", "128k", "--disable", file, "other");
                break;
            case "aes":
                Tools.QemuImg(d, "create", "-q", "-f", "qcow2", "--object", "secret,id=s0,data=x", "-o", "encrypt.format=aes,encrypt.key-secret=s0", file, "1M");
                break;
            case "dirty-overlay":
                Tools.QemuImg(d, "create", "-q", "-f", "qcow2", "base.qcow2", "1M");
                Tools.QemuImg(d, "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "-b", "base.qcow2", "-F", "qcow2", file);
                // Killed while dirty: the dirty bit stays set (qemu-img shows "cleanly shut down: no" before the backing file).
                Tools.Run("qemu-io", ["-f", "qcow2", "-c", "write 0 64k", "-c", "sigraise 9", file], d);
                break;
            case "odd-snapshots":
                Tools.QemuImg(d, "create", "-q", "-f", "qcow2", file, "64M");
                Tools.QemuImg(d, "snapshot", "-c", "s1", file);
                Tools.QemuImg(d, "snapshot", "-c", "s2", file);
                Tools.QemuImg(d, "snapshot", "-c", "a-tag-longer-than-sixteen-columns", file);
                PokeSnapshots(_dir.File(file));
                break;
            default:
                throw new ArgumentException(name);
        }
        return file;
    }

    /// <summary>Entry 1: a 100-hour VM clock, 1.5 MiB of VM state, no instruction count (all ones); entry 2: 5 GiB, a large count.</summary>
    private static void PokeSnapshots(string path)
    {
        byte[] header = new byte[72];
        using (var stream = File.OpenRead(path))
        {
            stream.ReadExactly(header);
        }
        long table = (long)System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(64));
        Tools.Poke(path, table + 24, BigEndian((ulong)((100 * 3600 + 62) * 1_000_000_000L + 500_000_007)));
        Tools.Poke(path, table + 40, BigEndian(1536 * 1024 + 5));
        Tools.Poke(path, table + 56, BigEndian(ulong.MaxValue));
        // Entries are 72 bytes here: 40 fixed, 24 extra, "2" "s2" padded to 8.
        Tools.Poke(path, table + 72 + 40, BigEndian(5UL << 30));
        Tools.Poke(path, table + 72 + 56, BigEndian(123_456_789_012));
    }

    private static byte[] BigEndian(ulong value)
    {
        byte[] bytes = new byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(bytes, value);
        return bytes;
    }

    /// <summary>Given exactly the values qemu-img reports (its JSON), our writer prints qemu-img's human and JSON text.</summary>
    [Theory]
    [MemberData(nameof(Images))]
    public void Writer_prints_qemu_img_info_from_its_values(string name)
    {
        string file = Make(name);
        string human = Tools.QemuImg(_dir.Path, "info", "-U", file).StdOut;
        string json = Tools.QemuImg(_dir.Path, "info", "-U", "--output=json", file).StdOut;
        using var document = JsonDocument.Parse(json);
        var info = QemuInfoJson.ToImageInfo(document.RootElement);

        var ours = new StringWriter { NewLine = "\n" };
        ImageInfoWriter.WriteHuman(ours, info);
        Assert.Equal(human, ours.ToString());
        ours = new StringWriter { NewLine = "\n" };
        ImageInfoWriter.WriteJson(ours, [info], asArray: false);
        Assert.Equal(json, ours.ToString());
    }
}
