using System.Buffers.Binary;
using Qed.Tests.Cli;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Formats;

/// <summary>
/// Persistent bitmaps made by <c>qemu-img bitmap --add</c>, then broken one field at a time: QEMU loads the bitmap
/// directory (and the tables of bitmaps not in use) at every open and refuses a broken one, so qed's info, check and
/// convert must end as qemu-img's do: the same exit status and, when QEMU cannot open the image, its very line; when
/// both open it, info's output (human and JSON) and check's are qemu-img's.
/// </summary>
public sealed class Qcow2BitmapTests
{
    private const int EntrySize = 32; // a directory entry with a 2-byte name, rounded up to 8

    /// <summary>The commands, as qed/qemu-img arguments; FILE and OUT stand for the image and a convert output.</summary>
    private static readonly Dictionary<string, string[]> s_commands = new()
    {
        ["info"] = ["info", "FILE"],
        ["info-json"] = ["info", "--output=json", "FILE"],
        ["check"] = ["check", "FILE"],
        ["convert"] = ["convert", "-O", "raw", "FILE", "OUT"],
    };

    /// <summary>How each image is made from the two-bitmap image (b0 then b1); poke offsets are in <see cref="Layout"/>.</summary>
    private static readonly Dictionary<string, Action<string, Layout>> s_images = new()
    {
        ["intact"] = (_, _) => { },
        ["type 5"] = (f, l) => Poke(f, l.Entry(0) + 16, 5, 1),
        ["granularity 8"] = (f, l) => Poke(f, l.Entry(0) + 17, 8, 1),
        ["granularity 32"] = (f, l) => Poke(f, l.Entry(0) + 17, 32, 1),
        ["unknown flag"] = (f, l) => Poke(f, l.Entry(0) + 12, 0x82, 4),
        ["name beyond the directory"] = (f, l) => Poke(f, l.Entry(1) + 18, 100, 2),
        ["extra data"] = (f, l) =>
        {
            Poke(f, l.Entry(1) + 18, 0, 2);
            Poke(f, l.Entry(1) + 20, 2, 4);
        },
        ["table offset unaligned"] = (f, l) => Poke(f, l.Entry(0), l.TableOffset(0) + 512, 8),
        ["table offset 0"] = (f, l) => Poke(f, l.Entry(0), 0, 8),
        ["table size 0"] = (f, l) => Poke(f, l.Entry(0) + 8, 0, 4),
        ["table over 512 MiB"] = (f, l) => Poke(f, l.Entry(0) + 8, 0x10000, 4),
        ["table too long for the disk"] = (f, l) => Poke(f, l.Entry(0) + 8, 2, 4),
        ["table entry reserved bit"] = (f, l) => Poke(f, (long)l.TableOffset(0), 2, 8),
        ["in use, table entry reserved bit"] = (f, l) =>
        {
            Poke(f, l.Entry(0) + 12, 3, 4);
            Poke(f, (long)l.TableOffset(0), 2, 8);
        },
        ["in use, table too long for the disk"] = (f, l) =>
        {
            Poke(f, l.Entry(0) + 12, 1, 4);
            Poke(f, l.Entry(0) + 8, 2, 4);
        },
        ["count 1 of 2"] = (f, l) => Poke(f, l.Extension, 1, 4),
        ["count 3 of 2"] = (f, l) => Poke(f, l.Extension, 3, 4),
        ["directory cut in an entry"] = (f, l) => Poke(f, l.Extension + 8, EntrySize + 16, 8),
        ["same name twice"] = (f, l) => Poke(f, l.Entry(1) + 24 + 1, '0', 1),
        ["same name twice, second in use"] = (f, l) =>
        {
            Poke(f, l.Entry(1) + 24 + 1, '0', 1);
            Poke(f, l.Entry(1) + 12, 3, 4);
        },
        ["autoclear bit clear"] = (f, _) => Poke(f, 88, 0, 8),
    };

    public static TheoryData<string, string> Cases() => Qcow2TestLayout.EveryPair(s_images.Keys, s_commands.Keys);

    [Theory]
    [MemberData(nameof(Cases))]
    public void Broken_bitmaps_get_qemu_img_s_answer(string image, string command)
    {
        using var dir = new TempDirectory();
        string file = dir.File("b.qcow2");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", file, "64M");
        Tools.QemuImg(dir.Path, "bitmap", "--add", file, "b0");
        Tools.QemuImg(dir.Path, "bitmap", "--add", "-g", "128k", file, "b1");
        Tools.QemuIo(dir.Path, "qcow2", file, "write -P 0x33 0 1M", "write -P 0x44 8M 64k");
        var layout = Layout.Of(File.ReadAllBytes(file));
        Assert.Equal(2u, layout.Count);
        s_images[image](file, layout);
        string before = QedCli.Fingerprint(file);

        var ours = QedCli.Run(Arguments(dir, command, file, "ours.raw"));
        var qemu = Tools.Run("qemu-img", Arguments(dir, command, file, "qemu.raw"), dir.Path, TimeSpan.FromSeconds(60));

        string both = $"{image}, {command}\nqed: {ours}\nQEMU: {qemu}";
        Assert.True(ours.ExitCode == qemu.ExitCode, both);
        Assert.Equal(before, QedCli.Fingerprint(file));
        Assert.DoesNotContain("   at ", ours.StdErr, StringComparison.Ordinal);
        string[] qemuErrors = QedCli.Lines(qemu.StdErr);
        if (qemuErrors.Length == 1 && qemuErrors[0].Contains("Could not open", StringComparison.Ordinal))
        {
            Assert.True(QedCli.AsQed(qemuErrors[0]) == Assert.Single(QedCli.Lines(ours.StdErr)), both);
            Assert.False(File.Exists(dir.File("ours.raw")), both);
        }
        else if (command is "info" or "info-json" or "check")
        {
            Assert.True(qemu.StdOut == ours.StdOut, both);
            Assert.Equal(qemuErrors.Select(QedCli.AsQed), QedCli.Lines(ours.StdErr));
        }
        else if (qemu.ExitCode == 0)
        {
            Assert.Equal(Tools.Sha256OfFile(dir.File("qemu.raw")), Tools.Sha256OfFile(dir.File("ours.raw")));
        }
    }

    private static string[] Arguments(TempDirectory dir, string command, string file, string output) =>
        [.. s_commands[command].Select(a => a switch
        {
            "FILE" => file,
            "OUT" => dir.File(output),
            _ => a,
        })];

    private static void Poke(string file, long offset, ulong value, int width) => Qcow2TestLayout.PokeBigEndian(file, offset, value, width);

    /// <summary>Where the bitmaps extension's data and the directory entries lie in a fresh image.</summary>
    private sealed record Layout(long Extension, long Directory, uint Count, ulong[] TableOffsets)
    {
        public long Entry(int index) => Directory + index * EntrySize;

        public ulong TableOffset(int index) => TableOffsets[index];

        public static Layout Of(byte[] image)
        {
            int position = (int)BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(100));
            while (true)
            {
                uint magic = BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(position));
                int length = (int)BinaryPrimitives.ReadUInt32BigEndian(image.AsSpan(position + 4));
                Assert.NotEqual(0u, magic);
                if (magic == 0x2385_2875)
                {
                    var data = image.AsSpan(position + 8);
                    uint count = BinaryPrimitives.ReadUInt32BigEndian(data);
                    long directory = (long)BinaryPrimitives.ReadUInt64BigEndian(data[16..]);
                    var tables = Enumerable.Range(0, (int)count)
                        .Select(i => BinaryPrimitives.ReadUInt64BigEndian(image.AsSpan((int)directory + i * EntrySize)))
                        .ToArray();
                    return new Layout(position + 8, directory, count, tables);
                }
                position += 8 + ((length + 7) & ~7);
            }
        }
    }
}
