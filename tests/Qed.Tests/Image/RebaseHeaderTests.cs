using System.Text;
using Qed.Backing;
using Qed.Format;
using Qed.Formats;
using Qed.Image;
using Qed.Tests.Infrastructure;
using Qed.Tests.PowerCut;

namespace Qed.Tests.Image;

/// <summary>
/// The engine's change of the backing file name (<see cref="ImageFormat.ChangeBackingFile"/>), sync and async: QEMU's
/// bytes (compared with <c>qemu-img rebase -u</c> on a copy, names crossing the first sector included), and every state a
/// power cut can leave naming either the old backing file or the new one, never a mix.
/// </summary>
public sealed class RebaseHeaderTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static readonly string s_long = "long-" + new string('l', 700) + ".raw";
    private static readonly string s_long2 = "other-" + new string('m', 500) + ".raw";

    /// <summary>An overlay naming <paramref name="backing"/> (which need not exist), with a cluster of data.</summary>
    private string Overlay(string name, string backing)
    {
        string path = _dir.File(name);
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-u", "-b", backing, "-F", "raw", path, "4M");
        return path;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_header_is_qemu_img_rebase_u_s_byte_for_byte(bool useAsync)
    {
        var cases = new (string Old, string? New, string? Format)[]
        {
            ("base.raw", "n.raw", "raw"),
            ("base.raw", "n.qed", "qed"),
            ("base.raw", null, null),
            ("base.raw", s_long, "raw"),     // the name crosses into the second sector
            (s_long, "n.raw", "raw"),        // the old name's tail stays, as in QEMU
            (s_long, s_long2, "raw"),
        };
        int i = 0;
        foreach (var (old, name, format) in cases)
        {
            string ours = Overlay($"o{i}.qed", old);
            string qemu = _dir.File($"q{i}.qed");
            File.Copy(ours, qemu);
            i++;
            string[] formatArgs = format is null ? [] : ["-F", format];
            Tools.QemuImg(_dir.Path, ["rebase", "-f", "qed", "-u", "-b", name ?? "", .. formatArgs, qemu]);
            var image = QedImage.Open(ours, new ImageOpenOptions { NoBacking = true });
            if (useAsync)
            {
                await ImageFormats.Qed.ChangeBackingFileAsync(image, name, format);
                Assert.Equal(name, image.BackingFileName);
                await image.DisposeAsync();
            }
            else
            {
                ImageFormats.Qed.ChangeBackingFile(image, name, format);
                Assert.Equal(name, image.BackingFileName);
                image.Dispose();
            }
            Assert.True(Tools.Sha256OfFile(qemu) == Tools.Sha256OfFile(ours), $"{old} -> {name}: the files differ");
        }
        Assert.Equal(6, i);
    }

    [Fact]
    public void A_read_only_image_and_a_raw_image_are_refused()
    {
        string path = Overlay("o.qed", "base.raw");
        using (var image = QedImage.Open(path, new ImageOpenOptions { NoBacking = true, ReadOnly = true }))
        {
            Assert.Throws<QedReadOnlyException>(() => ImageFormats.Qed.ChangeBackingFile(image, "x", "raw"));
        }
        string raw = _dir.File("r.raw");
        File.WriteAllBytes(raw, new byte[4096]);
        using var device = ImageFormats.Raw.Open(raw);
        var e = Assert.Throws<QedUnsupportedException>(() => ImageFormats.Raw.ChangeBackingFile(device, "x", "raw"));
        Assert.Equal("Operation not supported (raw images have no backing file)", e.Message);
        Assert.Throws<ArgumentException>(() => ImageFormats.Qed.ChangeBackingFile(device, "x", "raw"));
    }

    [Theory]
    [InlineData("base.raw", "n.raw")]
    [InlineData("base.raw", "")]
    [InlineData("base.raw", "long")]
    [InlineData("long", "n.raw")]
    public async Task Every_power_cut_leaves_the_old_name_or_the_new_one(string old, string name)
    {
        old = old == "long" ? s_long : old;
        name = name == "long" ? s_long : name;
        int seed = TestSeed.For($"{nameof(Every_power_cut_leaves_the_old_name_or_the_new_one)}({old.Length},{name.Length})");
        var random = new Random(seed);
        string path = Overlay("p.qed", old);
        byte[] initial = File.ReadAllBytes(path);

        var file = new RecordingFileAccessor(path, initial);
        var image = await QedImage.OpenCoreAsync(file, new ImageOpenOptions { NoBacking = true }, BackingChain.Start(path), useAsync: true, CancellationToken.None);
        await ImageFormats.Qed.ChangeBackingFileAsync(image, name, "raw");
        await image.DisposeAsync();
        Assert.Equal(Named(initial), (old, true));
        Assert.Equal(Named(file.ToArray()), (name.Length == 0 ? null : name, name.Length > 0));

        var generator = new CrashStateGenerator(initial, file.Log);
        int states = 0, sawOld = 0, sawNew = 0;
        foreach (var recipe in generator.Exhaustive().Concat(generator.Prefixes()).Concat(generator.TornPrefixes(random)))
        {
            var named = Named(generator.Materialize(recipe).ToArray());
            Assert.True(named == (old, true) || named == (name.Length == 0 ? null : name, name.Length > 0), $"a crash state names '{named.Name}' (seed {seed})");
            states++;
            sawOld += named.Name == old ? 1 : 0;
            sawNew += named.Name == old ? 0 : 1;
        }
        Assert.True(states >= 4 && sawOld > 0 && sawNew > 0, $"{states} states, {sawOld} old, {sawNew} new");
    }

    [Fact]
    public async Task Every_power_cut_during_a_safe_rebase_leaves_the_disk_reading_the_same()
    {
        int seed = TestSeed.For(nameof(Every_power_cut_during_a_safe_rebase_leaves_the_disk_reading_the_same));
        var random = new Random(seed);
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "raw", _dir.File("base.raw"), "2M");
        Tools.QemuIo(_dir.Path, "raw", _dir.File("base.raw"), "write -P 0xb0 0 2M");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "raw", _dir.File("new.raw"), "2M");
        Tools.QemuIo(_dir.Path, "raw", _dir.File("new.raw"), "write -P 0xb0 0 1M", "write -P 0x5c 1M 512k");
        string path = _dir.File("ov.qed");
        Tools.QemuImg(_dir.Path, "create", "-q", "-f", "qed", "-o", "cluster_size=4096", "-b", "base.raw", "-F", "raw", path);
        Tools.QemuIo(_dir.Path, "qed", path, "write -P 0x11 64k 4k", "write -P 0x12 1100k 6k");
        byte[] initial = File.ReadAllBytes(path);
        string expected;
        using (var before = DiskImage.Open(path, "qed", new ImageOpenOptions { ReadOnly = true }))
        {
            expected = DeviceDigest.Sha256(before);
        }

        var file = new RecordingFileAccessor(path, initial);
        var image = await QedImage.OpenCoreAsync(file, new ImageOpenOptions { ZeroClustersWithoutBacking = true }, BackingChain.Start(path), useAsync: false, CancellationToken.None);
        using (var newBacking = DiskImage.Open(_dir.File("new.raw"), "raw", new ImageOpenOptions { ReadOnly = true }))
        {
            var copier = new Qed.Cli.Commands.Rebase.RebaseCopier(image, newBacking);
            copier.Copy((_, _) => { });
            Assert.True(copier.BytesWritten > 0);
        }
        ImageFormats.Qed.ChangeBackingFile(image, "new.raw", "raw");
        image.Dispose();

        var generator = new CrashStateGenerator(initial, file.Log);
        string state = _dir.File("state.qed");
        int states = 0, rebased = 0;
        foreach (var recipe in generator.DistinctStates(random, 150))
        {
            File.WriteAllBytes(state, generator.Materialize(recipe).ToArray());
            using var device = DiskImage.Open(state, "qed", new ImageOpenOptions { ReadOnly = true });
            Assert.True(expected == DeviceDigest.Sha256(device), $"a crash state over '{device.Backing?.FileName}' reads differently (seed {seed})");
            states++;
            rebased += device.Backing!.FileName.EndsWith("new.raw", StringComparison.Ordinal) ? 1 : 0;
        }
        Assert.True(states >= 20 && rebased > 0 && rebased < states, $"{states} states, {rebased} over the new backing file");
    }

    /// <summary>The backing file a header names (as QEMU reads it) and whether it says raw.</summary>
    private static (string? Name, bool Raw) Named(byte[] file)
    {
        var header = QedHeader.Parse(file);
        if (!header.HasBackingFile)
        {
            return (null, false);
        }
        string name = Encoding.UTF8.GetString(file, (int)header.BackingFilenameOffset, (int)header.BackingFilenameSize);
        return (name, (header.Features & QedFeatures.BackingFormatNoProbe) != 0);
    }
}
