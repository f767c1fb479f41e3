using System.Text.RegularExpressions;
using Qed.Cli;
using Qed.Cli.CommandLine;
using Qed.Cli.Commands;
using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Cli;

/// <summary>
/// The option tables: help comes from them and lists exactly what the parser accepts; glibc getopt's habits on the
/// real commands, compared with qemu-img; and the drifts the tables replaced (cache modes, create's geometry check).
/// </summary>
public partial class OptionTableTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string> CommandNames => [.. Program.Commands.Select(c => c.Options.Command)];

    private static OptionTable Table(string command) => Program.Commands.Single(c => c.Options.Command == command).Options;

    [Theory]
    [MemberData(nameof(CommandNames))]
    public void Command_help_comes_from_the_table(string command)
    {
        var table = Table(command);
        foreach (string flag in new[] { "--help", "-h", "--he" })
        {
            var result = QedCli.Ok(command, flag);
            // Help is wrapped at 100 columns; unwrapped, it is the table's text.
            string unwrapped = Unwrap(result.StdOut);
            Assert.StartsWith($"usage: qed {table.Synopsis}\n\n{table.Description}\n", unwrapped, StringComparison.Ordinal);
            foreach (var option in table.Options)
            {
                Assert.Matches($"\n  {Regex.Escape(option.Spellings)}  +{Regex.Escape(option.Help)}\n", unwrapped);
            }
            Assert.All(QedCli.Lines(result.StdOut), line => Assert.True(line.Length <= OptionTable.HelpWidth, line));
            Assert.Equal("", result.StdErr);
        }

        string global = QedCli.Ok("--help").StdOut;
        Assert.Contains($"  {table.Synopsis}\n", Unwrap(global), StringComparison.Ordinal);
    }

    /// <summary>Joins continuation lines (a line break followed by the indentation of wrapped help) back into one line.</summary>
    private static string Unwrap(string help) => WrappedLine().Replace(help, " ");

    [GeneratedRegex(@"\n {8,}(?=\S)")]
    private static partial Regex WrappedLine();

    /// <summary>
    /// Walks every command: the options its help shows (read back from the help text) are exactly the ones its parser
    /// accepts (found by trying every letter and every long name on the real command).
    /// </summary>
    [Theory]
    [MemberData(nameof(CommandNames))]
    public void Help_lists_exactly_the_options_the_parser_accepts(string command)
    {
        string fullHelp = QedCli.Ok(command, "--help").StdOut;
        string help = fullHelp[fullHelp.IndexOf("\nOptions:\n", StringComparison.Ordinal)..];
        var shownLetters = new SortedSet<char>(OptionLetter().Matches(help).Select(m => m.Groups[1].Value[0]));
        var shownLongs = new SortedSet<string>(OptionLongName().Matches(help).Select(m => m.Groups[1].Value), StringComparer.Ordinal);

        string a = _dir.File("a"), b = _dir.File("b");
        var acceptedLetters = new SortedSet<char>();
        int tried = 0;
        foreach (char letter in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        {
            tried++;
            var result = QedCli.Run(command, $"-{letter}", a, b);
            // serve words getopt's refusals as qemu-nbd does (glibc's "invalid option -- 'X'").
            if (!result.StdErr.Contains($"unrecognized option '-{letter}'", StringComparison.Ordinal)
                && !result.StdErr.Contains($"invalid option -- '{letter}'", StringComparison.Ordinal))
            {
                acceptedLetters.Add(letter);
            }
        }
        Assert.Equal(62, tried);
        var acceptedLongs = new SortedSet<string>(StringComparer.Ordinal);
        foreach (string name in shownLongs)
        {
            // A flag refuses "=value" and an option with an argument takes it, so one of the two spellings is accepted.
            var withValue = QedCli.Run(command, $"--{name}={a}", b);
            var bare = QedCli.Run(command, $"--{name}", a, b);
            if (!withValue.StdErr.Contains("unrecognized option", StringComparison.Ordinal) || !bare.StdErr.Contains("unrecognized option", StringComparison.Ordinal))
            {
                acceptedLongs.Add(name);
            }
        }

        Assert.Equal(shownLetters, acceptedLetters);
        Assert.Equal(shownLongs, acceptedLongs);
        Assert.Equal(new SortedSet<char>(Table(command).Options.Where(o => o.Letter != '\0').Select(o => o.Letter)), shownLetters);
        Assert.Equal(new SortedSet<string>(Table(command).Options.Where(o => o.LongName is not null).Select(o => o.LongName!), StringComparer.Ordinal), shownLongs);
        Assert.False(File.Exists(a) || File.Exists(b), "probing must not create files");
    }

    [Fact]
    public void Io_subcommand_usage_lines_come_from_their_tables()
    {
        string ioHelp = QedCli.Ok("io", "--help").StdOut;
        var subcommands = Qed.Cli.Commands.Io.IoSession.Subcommands;
        Assert.Equal(["read", "write", "flush", "sleep"], subcommands.Select(c => c.Name));
        foreach (var command in subcommands)
        {
            Assert.StartsWith($"{command.Name} ", command.Usage, StringComparison.Ordinal);
            Assert.EndsWith($" -- {command.Options.Description}", command.Usage, StringComparison.Ordinal);
            foreach (var option in command.Options.Options)
            {
                Assert.Contains(option.TakesArgument ? $"[-{option.Letter} {option.Argument}]" : option.Letter.ToString(), command.Usage, StringComparison.Ordinal);
            }
            Assert.Contains($"\n  {command.Usage}\n", ioHelp, StringComparison.Ordinal);
        }
        Assert.Equal("read [-qv] [-P pattern] off len -- reads a number of bytes at a specified offset", subcommands[0].Usage);
    }

    [Fact]
    public void Reading_an_option_the_table_does_not_declare_is_a_bug()
    {
        var parsed = Table("info").Parse(["x"]);
        Assert.Throws<InvalidOperationException>(() => parsed.Has(CommonOptions.Quiet));
    }

    [Fact]
    public void A_table_refuses_an_option_declared_twice()
    {
        Assert.Throws<ArgumentException>(() => new OptionTable("t", "", "", CommonOptions.Format, CommonOptions.FormatLetter));
        Assert.Throws<ArgumentException>(() => new OptionTable("t", "", "", CommonOptions.ForceShare, new CliFlag('\0', "force-share", "again")));
    }

    /// <summary>glibc getopt's habits, on real commands, answered exactly as qemu-img answers them.</summary>
    [Theory]
    [InlineData("info -fqed IMG")]
    [InlineData("info -Ufqed IMG")]
    [InlineData("info -Uf qed IMG")]
    [InlineData("info --output json IMG")]
    [InlineData("info --output=json IMG")]
    [InlineData("info --out=json IMG")]
    [InlineData("info --form=qed IMG")]
    [InlineData("info --f qed IMG")]
    [InlineData("info --backing IMG")]
    [InlineData("info --backing-chain=1 IMG")]
    [InlineData("info IMG --output=json")]
    [InlineData("info IMG -f")]
    [InlineData("info --output")]
    [InlineData("info -- IMG")]
    [InlineData("info -z IMG")]
    [InlineData("info -Uz IMG")]
    [InlineData("info --nope IMG")]
    [InlineData("info IMG IMG")]
    [InlineData("info --output=xml IMG")]
    [InlineData("info -h --nope")]
    [InlineData("check -qU IMG")]
    [InlineData("check --rep=all IMG")]
    [InlineData("check -rleaks -q IMG")]
    [InlineData("check -r leaks -z IMG")]
    [InlineData("check -z -r bogus IMG")]
    [InlineData("check -r bogus -z IMG")]
    [InlineData("check -T off IMG")]
    [InlineData("check -T bogus IMG")]
    [InlineData("check -T bogus IMG IMG")]
    [InlineData("bench -c 0x10 -d 010 -t off IMG")]
    [InlineData("bench -c 1 -t bogus IMG")]
    [InlineData("bench -c x -z IMG")]
    [InlineData("bench -c 1 -i bogus IMG")]
    [InlineData("bench -c 1 -s 1Q IMG")]
    [InlineData("bench -c 1 -S 3G IMG")]
    [InlineData("bench -c 1 -o 9E IMG")]
    [InlineData("bench -c 1 --pattern=256 -w IMG")]
    [InlineData("bench -c 1 --flush-int=8 IMG")]
    [InlineData("bench -c 1 --no IMG")]
    [InlineData("convert -T off -t off -O raw IMG OUT")]
    [InlineData("convert -T bogus IMG OUT")]
    [InlineData("convert -t bogus IMG OUT")]
    [InlineData("convert -T bogus IMG")]
    public void Getopt_habits_match_qemu_img(string commandLine)
    {
        string image = _dir.File("img.qed");
        QedImage.Create(image, new QedCreateOptions { Size = 1 << 20 });
        string[] args = [.. commandLine.Split(' ').Select(a => a switch { "IMG" => image, "OUT" => _dir.File("out.raw"), _ => a })];

        var qemu = Tools.QemuImgRaw(_dir.Path, args);
        FileCleanup.DeleteQuietly(_dir.File("out.raw"));
        var ours = QedCli.Run(args);

        Assert.True(qemu.ExitCode == ours.ExitCode, $"qemu-img: {qemu}\nqed: {ours}");
        // bench and check print timings or our L2 counters after qemu-img's lines; info prints the same (help aside:
        // qemu-img prints its global help for -h, we print the command's).
        if (args[0] == "info" && !args.Contains("-h"))
        {
            Assert.Equal(qemu.StdOut, ours.StdOut);
        }
        // qemu-img splits its size hint over two lines ("... suffixes for" / "kilobytes, ..."); we keep it on one.
        string? theirs = QedCli.Lines(qemu.StdErr).Select(QedCli.AsQed).FirstOrDefault();
        string? mine = QedCli.Lines(ours.StdErr).FirstOrDefault();
        Assert.True(theirs is null ? mine is null : mine is not null && mine.StartsWith(theirs.TrimEnd(), StringComparison.Ordinal), $"qemu-img: {theirs}\nqed: {mine}");
    }

    [Theory]
    [InlineData("off")]
    [InlineData("none")]
    [InlineData("directsync")]
    [InlineData("bogus")]
    public void Io_takes_the_cache_modes_qemu_io_takes(string mode)
    {
        string image = _dir.File("io.qed");
        QedImage.Create(image, new QedCreateOptions { Size = 1 << 20 });
        var qemu = Tools.Run("qemu-io", ["-f", "qed", "-t", mode, "-c", "read -q 0 512", image], _dir.Path);
        var ours = QedCli.Run("io", "-f", "qed", "-t", mode, "-c", "read -q 0 512", image);
        Assert.Equal(qemu.ExitCode, ours.ExitCode);
        Assert.Equal(QedCli.Lines(qemu.StdErr).Select(QedCli.AsQed), QedCli.Lines(ours.StdErr));
        var longForm = QedCli.Run("io", "-f", "qed", $"--cache={mode}", "-c", "read -q 0 512", image);
        Assert.Equal(ours, longForm);
    }

    [Fact]
    public void Every_command_takes_the_same_cache_modes()
    {
        // One list (qemu's bdrv_parse_cache_mode) for io -t, bench -t, check -T and convert -t/-T.
        foreach (string mode in new[] { "none", "off", "writeback", "writethrough", "directsync", "unsafe" })
        {
            Assert.True(CacheModes.IsValid(mode), mode);
        }
        Assert.False(CacheModes.IsValid("None"));
        Assert.False(CacheModes.IsValid(""));
    }

    [Theory]
    [InlineData("cluster_size=5G")]
    [InlineData("cluster_size=16E")]
    public void Create_reports_the_engine_geometry_message_for_values_beyond_int(string option)
    {
        string path = _dir.File("big.qed");
        var qemu = Tools.QemuImgRaw(_dir.Path, "create", "-f", "qed", "-o", option, path, "1M");
        FileCleanup.DeleteQuietly(path);
        var ours = QedCli.Run("create", "-f", "qed", "-o", option, path, "1M");
        Assert.Equal(1, ours.ExitCode);
        Assert.Equal(qemu.ExitCode, ours.ExitCode);
        Assert.Equal(qemu.StdOut, ours.StdOut);
        string line = Assert.Single(QedCli.Lines(ours.StdErr));
        Assert.StartsWith(QedCli.AsQed(QedCli.Lines(qemu.StdErr)[0]), line, StringComparison.Ordinal);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void File_cleanup_deletes_and_never_throws()
    {
        string file = _dir.File("left.img");
        File.WriteAllText(file, "x");
        FileCleanup.DeleteQuietly(file);
        Assert.False(File.Exists(file));
        FileCleanup.DeleteQuietly(file);
        Directory.CreateDirectory(_dir.File("d"));
        FileCleanup.DeleteQuietly(_dir.File("d"));
        Assert.True(Directory.Exists(_dir.File("d")));
    }

    [GeneratedRegex(@"^  -([A-Za-z0-9])\b", RegexOptions.Multiline)]
    private static partial Regex OptionLetter();

    [GeneratedRegex(@"--([a-z0-9][a-z0-9-]*)")]
    private static partial Regex OptionLongName();
}
