using Qed.Tests.Infrastructure;
using Qed.Tests.Interop;

namespace Qed.Tests.Cli;

/// <summary>
/// <c>qed map</c> on qcow2 against <c>qemu-img map</c> at test time, byte for byte: every readable fixture of QCOW2.md
/// §16 (zero clusters with and without a host offset, subclusters, compressed clusters, an external data file, chains of
/// qcow2 and raw) in human and JSON form and over sub-ranges, a QED image over qcow2, and the human map's refusal of
/// compressed data; the encrypted fixture is refused in one line.
/// </summary>
public sealed class MapQcow2Tests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static readonly string[][] s_ranges =
    [
        [],
        ["--start-offset=4k", "--max-length=3M"],
        ["--start-offset=1000", "--max-length=70000"],
    ];

    [Theory]
    [MemberData(nameof(Qcow2Cli.Readable), MemberType = typeof(Qcow2Cli))]
    public void Map_equals_qemu_img_map(string name)
    {
        int compared = 0;
        foreach (string[] range in s_ranges)
        {
            foreach (string output in new[] { "--output=human", "--output=json" })
            {
                Qcow2Cli.AssertSame(["map", output, .. range, "@" + name]);
                compared++;
            }
        }
        Qcow2Cli.AssertSame("map", "-f", "qcow2", "--output=json", "@" + name);
        compared++;
        Assert.Equal(2 * s_ranges.Length + 1, compared);
    }

    [Fact]
    public void A_qed_overlay_over_qcow2_maps_as_qemu_img()
    {
        string d = _dir.Path;
        Qcow2Fixtures.CopyTo("Q09", d);
        Tools.QemuImg(d, "create", "-q", "-f", "qed", "-b", "Q09.qcow2", "-F", "qcow2", "top.qed");
        Tools.QemuIo(d, "qed", "top.qed", "write -P 0x33 192k 64k", "write -z 4M 64k");
        string top = _dir.File("top.qed");
        foreach (string output in new[] { "--output=human", "--output=json" })
        {
            var qemu = Tools.QemuImg(d, "map", output, top);
            var ours = QedCli.Ok("map", output, top);
            Assert.Equal(qemu.StdOut, ours.StdOut);
        }
    }

    [Fact]
    public void Human_map_stops_at_compressed_data_as_qemu_img()
    {
        string d = _dir.Path;
        Tools.QemuImg(d, "create", "-q", "-f", "qcow2", "c.qcow2", "4M");
        Tools.QemuIo(d, "qcow2", "c.qcow2", "write -P 1 0 64k", "write -c -P 2 64k 64k", "write -P 3 128k 64k");
        string image = _dir.File("c.qcow2");
        foreach (string[] args in new string[][] { ["map", image], ["map", "--output=json", image], ["map", "--start-offset=128k", image] })
        {
            var qemu = Tools.QemuImgRaw(d, args);
            var ours = QedCli.Run(args);
            Assert.Equal(qemu.ExitCode, ours.ExitCode);
            Assert.Equal(qemu.StdOut, ours.StdOut);
            Assert.Equal(Qcow2Cli.AsQed(qemu.StdErr), ours.StdErr);
        }
    }

    [Fact]
    public void Encrypted_image_is_refused_in_one_line()
    {
        string before = Tools.Sha256OfFile(Qcow2Fixtures.Get("Q16").Path);
        Qcow2Cli.AssertEncryptedRefusal(QedCli.Run("map", Qcow2Fixtures.Get("Q16").Path));
        Assert.Equal(before, Tools.Sha256OfFile(Qcow2Fixtures.Get("Q16").Path));
    }
}
