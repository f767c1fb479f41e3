using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary><c>qed create</c> against <c>qemu-img create</c>: same bytes, same "Formatting" line, same errors (but no file left behind).</summary>
public class CreateCommandTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Backing files the option sets refer to: a 4 MiB raw file and a 10 MiB QED image.</summary>
    private void MakeBackingFiles()
    {
        // Made in-process (qemu-img would give the same bytes) to keep the many cases fast.
        using (var raw = File.Create(_dir.File("base.raw")))
        {
            raw.SetLength(4 << 20);
        }
        QedImage.Create(_dir.File("def.qed"), new QedCreateOptions { Size = 10 << 20 });
    }

    public static TheoryData<string[]> OptionSets => new()
    {
        new[] { "-f", "qed", "FILE", "10M" },
        new[] { "-f", "qed", "-o", "cluster_size=4096,table_size=2", "-b", "base.raw", "-F", "raw", "FILE", "8M" },
        new[] { "-f", "qed", "-b", "def.qed", "-F", "qed", "FILE" },
        new[] { "-f", "qed", "-b", "base.raw", "-F", "raw", "FILE" },
        new[] { "-f", "qed", "-o", "cluster_size=1M,table_size=16", "FILE", "64M" },
        new[] { "-f", "qed", "FILE", "1000" },
        new[] { "-f", "qed", "FILE", "0" },
        new[] { "-f", "qed", "-o", "size=1.5M,cluster_size=4k", "FILE" },
        new[] { "-f", "qed", "-u", "-b", "missing.raw", "-F", "raw", "FILE", "1M" },
        new[] { "-f", "qed", "-u", "-b", "missing.qcow2", "-F", "qcow2", "FILE", "1M" },
        new[] { "-f", "qed", "-o", "backing_file=base.raw,backing_fmt=raw", "FILE" },
        new[] { "-f", "qed", "-o", "backing_file=x.raw", "-b", "base.raw", "-F", "raw", "FILE", "2M" },
        new[] { "-f", "qed", "-F", "raw", "FILE", "1M" },
        new[] { "-f", "qed", "-o", "table_size=1", "FILE", "1M" },
        new[] { "-f", "qed", "-o", "cluster_size=8M,table_size=2", "FILE", "0" },
        new[] { "-f", "qed", "FILE", "64T" },
        new[] { "-fqed", "-q", "FILE", "1G" },
        new[] { "-f", "raw", "FILE", "1000" },
        new[] { "FILE", "1M" },
        new[] { "-f", "raw", "-o", "size=0x1000", "FILE" },
    };

    [Theory]
    [MemberData(nameof(OptionSets))]
    public void Creates_the_same_bytes_and_prints_the_same_line_as_qemu_img(string[] options)
    {
        MakeBackingFiles();
        var (theirs, ours) = (_dir.File("theirs.img"), _dir.File("ours.img"));
        var qemu = Tools.QemuImgRaw(_dir.Path, ["create", .. WithFile(options, theirs)]);
        Assert.True(qemu.ExitCode == 0, qemu.ToString());

        var result = QedCli.Run(["create", .. WithFile(options, ours)]);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Equal(qemu.StdOut.Replace(theirs, ours, StringComparison.Ordinal), result.StdOut);
        Assert.Equal(QedCli.Fingerprint(theirs), QedCli.Fingerprint(ours));
    }

    [Fact]
    public void Warns_that_qemu_cannot_open_table_size_1()
    {
        var result = QedCli.Run("create", "-f", "qed", "-o", "table_size=1", _dir.File("t1.qed"), "1M");
        Assert.Equal(0, result.ExitCode);
        Assert.StartsWith("qed: warning: ", result.StdErr, StringComparison.Ordinal);
        Assert.Contains("table_size=1", result.StdErr, StringComparison.Ordinal);
        Assert.Single(QedCli.Lines(result.StdErr));
    }

    [Fact]
    public void Relative_backing_names_resolve_against_the_new_image_directory()
    {
        Directory.CreateDirectory(_dir.File("sub"));
        Tools.QemuImg(_dir.Path, "create", "-f", "raw", _dir.File("base.raw"), "3M");
        var result = QedCli.Run("create", "-f", "qed", "-b", "../base.raw", "-F", "raw", _dir.File("sub/ov.qed"));
        Assert.True(result.ExitCode == 0, result.ToString());
        var info = Tools.QemuImg(_dir.Path, "info", "--output=json", _dir.File("sub/ov.qed"));
        Assert.Contains("\"virtual-size\": 3145728", info.StdOut, StringComparison.Ordinal);
        Assert.Contains("\"backing-filename\": \"../base.raw\"", info.StdOut, StringComparison.Ordinal);
    }

    public static TheoryData<string[]> FailingOptionSets => new()
    {
        new[] { "-f", "qed", "FILE" },
        new[] { "-f", "qed", "-b", "def.qed", "FILE" },
        new[] { "-f", "qed", "-u", "-b", "def.qed", "FILE", "1M" },
        new[] { "-f", "qed", "-o", "cluster_size=3000", "FILE", "1M" },
        new[] { "-f", "qed", "-o", "cluster_size=128M", "FILE", "1M" },
        new[] { "-f", "qed", "-o", "table_size=3", "FILE", "1M" },
        new[] { "-f", "qed", "-o", "table_size=32", "FILE", "1M" },
        new[] { "-f", "qed", "FILE", "65T" },
        new[] { "-f", "qed", "FILE", "1Q" },
        new[] { "-f", "qed", "FILE", "1.5" },
        new[] { "-f", "qed", "FILE", "16E" },
        new[] { "-f", "qed", "FILE", "9223372036854775808" },
        new[] { "-f", "qed", "-o", "foo=1", "FILE", "1M" },
        new[] { "-f", "qed", "-o", "cluster_size=abc", "FILE", "1M" },
        new[] { "-f", "qed", "-o", "size=-1", "FILE" },
        new[] { "-f", "qed", "-o", "size=1M", "FILE", "2M" },
        new[] { "-f", "qed", "-o", "size=1M,", "FILE" },
        new[] { "-f", "qed", "-o", "backing_file=", "FILE", "1M" },
        new[] { "-f", "qed", "-b", "nonexist", "-F", "raw", "FILE", "1M" },
        new[] { "-f", "qed", "-b", "nonexist", "-F", "raw", "-o", "cluster_size=3000", "FILE" },
        new[] { "-f", "qed", "-b", "def.qed", "-F", "raw", "-o", "cluster_size=3000", "FILE" },
        new[] { "-f", "qcow5", "FILE", "1M" },
        new[] { "-f", "raw", "-o", "cluster_size=4k", "FILE", "1M" },
        new[] { "-f", "raw", "-b", "base.raw", "-F", "raw", "FILE", "1M" },
        new[] { "-f", "qed", "FILE", "1M", "extra" },
        new[] { "-f", "qed", "-x", "FILE", "1M" },
    };

    [Theory]
    [MemberData(nameof(FailingOptionSets))]
    public void Fails_like_qemu_img_but_leaves_no_file(string[] options)
    {
        MakeBackingFiles();
        var (theirs, ours) = (_dir.File("theirs.qed"), _dir.File("ours.qed"));
        var qemu = Tools.QemuImgRaw(_dir.Path, ["create", .. WithFile(options, theirs)]);
        Assert.Equal(1, qemu.ExitCode);

        var result = QedCli.Run(["create", .. WithFile(options, ours)]);

        Assert.Equal(1, result.ExitCode);
        Assert.False(File.Exists(ours), "a refused create must not leave a file");
        // qemu-img announces "Formatting ..." before the format's own checks run; so do we, at the same point.
        Assert.Equal(qemu.StdOut.Replace(theirs, ours, StringComparison.Ordinal), result.StdOut);
        // Our message is qemu-img's first line (qemu-img sometimes adds a hint line; we keep one line), possibly with details appended.
        string expected = QedCli.AsQed(QedCli.Lines(qemu.StdErr)[0]).Replace(theirs, ours, StringComparison.Ordinal);
        string[] ourLines = QedCli.Lines(result.StdErr);
        Assert.StartsWith(expected, ourLines[0], StringComparison.Ordinal);
        if (ourLines.Length > 1)
        {
            Assert.Equal(["Try 'qed --help' for more information"], ourLines[1..]);
        }
    }

    [Fact]
    public void Does_not_touch_an_existing_file_when_validation_fails()
    {
        string path = _dir.File("existing.qed");
        Tools.QemuImg(_dir.Path, "create", "-f", "qed", path, "1M");
        Tools.QemuIo(_dir.Path, "qed", path, "write -P 0x5a 0 64k");
        string before = QedCli.Fingerprint(path);

        foreach (string[] options in new[]
        {
            new[] { "-f", "qed", "-o", "cluster_size=3000", path, "1M" },
            new[] { "-f", "qed", "-b", "nonexist", "-F", "raw", path, "1M" },
            new[] { "-f", "qed", path, "65T" },
            new[] { "-f", "qed", "-o", "table_size=0", path, "1M" },
        })
        {
            var result = QedCli.Run(["create", .. options]);
            Assert.Equal(1, result.ExitCode);
            Assert.Single(QedCli.Lines(result.StdErr));
            Assert.Equal(before, QedCli.Fingerprint(path));
        }
    }

    [Fact]
    public void Refuses_sizes_that_qemu_computes_a_zero_maximum_for()
    {
        // qemu-img says "... less than 0 bytes" (its maximum wraps to 0, QED-FORMAT.md §2.2); we explain why instead.
        string path = _dir.File("c4m.qed");
        var result = QedCli.Run("create", "-f", "qed", "-o", "cluster_size=4M", path, "1M");
        Assert.Equal(1, result.ExitCode);
        Assert.StartsWith($"qed: {path}: QED image size must be 0 with cluster_size 4194304", result.StdErr, StringComparison.Ordinal);
        Assert.Single(QedCli.Lines(result.StdErr));
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void A_size_the_file_system_refuses_leaves_no_file()
    {
        // tmpfs takes any sparse size; the system temp directory is usually a disk file system with a size limit.
        string directory = Path.Combine(Path.GetTempPath(), "qed-cli-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(directory);
        try
        {
            string probe = Path.Combine(directory, "probe");
            try
            {
                using var handle = File.OpenHandle(probe, FileMode.Create, FileAccess.ReadWrite);
                RandomAccess.SetLength(handle, 7L << 60);
                Assert.Skip($"{directory} accepts a 7 EiB file, so the failure path cannot be reached there");
            }
            catch (Exception e) when (e is IOException or ArgumentOutOfRangeException)
            {
                File.Delete(probe);
            }
            string path = Path.Combine(directory, "huge.raw");
            var result = QedCli.Run("create", "-f", "raw", path, "7E");
            Assert.Equal(1, result.ExitCode);
            Assert.StartsWith($"qed: {path}: ", Assert.Single(QedCli.Lines(result.StdErr)), StringComparison.Ordinal);
            Assert.False(File.Exists(path));
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void Refuses_an_image_that_is_its_own_backing_file()
    {
        string path = _dir.File("loop.qed");
        var result = QedCli.Run("create", "-f", "qed", "-u", "-b", "loop.qed", "-F", "qed", path, "1M");
        Assert.Equal(1, result.ExitCode);
        Assert.Equal($"qed: {path}: Error: Trying to create an image with the same filename as the backing file\n", result.StdErr);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Option_help_lists_the_qed_options()
    {
        var qemu = Tools.QemuImg(_dir.Path, "create", "-f", "qed", "-o", "help");
        var result = QedCli.Ok("create", "-f", "qed", "-o", "help");
        Assert.StartsWith(result.StdOut, qemu.StdOut, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("0.1k")]
    [InlineData("0.9k")]
    [InlineData("1.5M")]
    [InlineData("0x1k")]
    [InlineData("1.0")]
    [InlineData("+5")]
    [InlineData("1.5e")]
    public void Size_strings_mean_what_they_mean_to_qemu_img(string size)
    {
        var qemu = Tools.QemuImgRaw(_dir.Path, "create", "-f", "raw", _dir.File("x.raw"), size);
        var result = QedCli.Run("create", "-f", "raw", _dir.File("x.raw"), size);
        Assert.Equal(QedCli.Lines(qemu.StdOut)[0], QedCli.Lines(result.StdOut)[0]);
    }

    /// <summary>The options with the placeholder <c>FILE</c> replaced by <paramref name="file"/>.</summary>
    private static string[] WithFile(string[] options, string file) => [.. options.Select(o => o == "FILE" ? file : o)];
}
