using Qed.Cli.CommandLine;

namespace Qed.Tests.Cli;

/// <summary>The getopt-style parser: the qemu-img command-line habits it must accept, and how it reports mistakes.</summary>
public class GetOptTests
{
    private static readonly GetOpt s_parser = new("f:o:qu",
        new LongOption("output", true),
        new LongOption("backing-chain", false),
        new LongOption("backing-file", true, "b"),
        new LongOption("help", false, "h"));

    private static string Describe(GetOptResult parsed) =>
        string.Join(" ", parsed.Options.Select(o => o.Value is null ? o.Key : $"{o.Key}={o.Value}")) + " | " + string.Join(" ", parsed.Positionals);

    [Theory]
    [InlineData(new[] { "-f", "qed", "a" }, "f=qed | a")]
    [InlineData(new[] { "-fqed", "a" }, "f=qed | a")]
    [InlineData(new[] { "-qfqed", "a" }, "q f=qed | a")]
    [InlineData(new[] { "-qu", "a" }, "q u | a")]
    [InlineData(new[] { "-qf", "qed", "a" }, "q f=qed | a")]
    [InlineData(new[] { "--output=json", "a" }, "output=json | a")]
    [InlineData(new[] { "--output", "json", "a" }, "output=json | a")]
    [InlineData(new[] { "--output=", "a" }, "output= | a")]
    [InlineData(new[] { "--out=json", "a" }, "output=json | a")]
    [InlineData(new[] { "--backing-c", "a" }, "backing-chain | a")]
    [InlineData(new[] { "a", "-f", "qed", "b" }, "f=qed | a b")]
    [InlineData(new[] { "a", "--output=json" }, "output=json | a")]
    [InlineData(new[] { "-f", "qed", "--", "-a", "--output" }, "f=qed | -a --output")]
    [InlineData(new[] { "-", "a" }, " | - a")]
    [InlineData(new[] { "-f", "-q", "a" }, "f=-q | a")]
    [InlineData(new[] { "-o", "a=1", "-o", "b=2", "x" }, "o=a=1 o=b=2 | x")]
    [InlineData(new[] { "--backing-file=x", "--help" }, "b=x h | ")]
    public void Parses_gnu_style_command_lines(string[] args, string expected) =>
        Assert.Equal(expected, Describe(s_parser.Parse(args)));

    [Theory]
    [InlineData(new[] { "--foo" }, "Unrecognized", "--foo", null)]
    [InlineData(new[] { "-z" }, "Unrecognized", "-z", 'z')]
    [InlineData(new[] { "-qz" }, "Unrecognized", "-qz", 'z')]
    [InlineData(new[] { "a", "-f" }, "MissingArgument", "-f", 'f')]
    [InlineData(new[] { "--output" }, "MissingArgument", "--output", null)]
    [InlineData(new[] { "--backing-chain=1" }, "Unrecognized", "--backing-chain=1", null)]
    [InlineData(new[] { "--backing" }, "Unrecognized", "--backing", null)]
    [InlineData(new[] { "--" + "=x" }, "Unrecognized", "--=x", null)]
    public void Reports_the_offending_argument(string[] args, string error, string argument, char? letter)
    {
        var e = Assert.Throws<GetOptException>(() => s_parser.Parse(args));
        Assert.Equal(Enum.Parse<GetOptError>(error), e.Error);
        Assert.Equal(argument, e.Argument);
        Assert.Equal(letter, e.ShortOption);
    }

    [Fact]
    public void Qemu_img_words_unknown_and_incomplete_options_alike()
    {
        var unknown = QedCli.Run("info", "--foo", "x");
        Assert.Equal(1, unknown.ExitCode);
        Assert.Equal("qed: unrecognized option '--foo'\nTry 'qed --help' for more information\n", unknown.StdErr);
        Assert.Equal("", unknown.StdOut);

        var missing = QedCli.Run("create", "x", "-f");
        Assert.Equal(1, missing.ExitCode);
        Assert.Equal("qed: missing argument for option '-f'\nTry 'qed --help' for more information\n", missing.StdErr);
    }

    private static readonly CliOption<int> s_count = new('c', "count", "N", "a count",
        v => int.TryParse(v, System.Globalization.CultureInfo.InvariantCulture, out int n) ? n : throw new Qed.Cli.CliException($"bad count {v}"));

    private static readonly OptionTable s_table = new("t", "FILE", "a test command", CommonOptions.Help, s_count, CommonOptions.Quiet);

    [Fact]
    public void Values_are_read_in_command_line_order_as_glibc_getopt_meets_them()
    {
        // The bad value comes first, so it is reported, not the unknown option after it (qemu-img's getopt loop does the same).
        var bad = Assert.Throws<Qed.Cli.CliException>(() => s_table.Parse(["-c", "x", "-z"]));
        Assert.Equal("bad count x", bad.Message);
        Assert.Throws<GetOptException>(() => s_table.Parse(["-z", "-c", "x"]));

        var parsed = s_table.Parse(["a", "-qc1", "--cou=2", "--", "-q"]);
        Assert.Equal(2, parsed.Get(s_count, 0));
        Assert.Equal([1, 2], parsed.All(s_count));
        Assert.True(parsed.Has(CommonOptions.Quiet));
        Assert.Equal(["a", "-q"], parsed.Positionals);
    }

    [Fact]
    public void Help_stops_parsing_where_it_is_met()
    {
        var parsed = s_table.Parse(["-q", "--help", "--nope", "-c", "x"]);
        Assert.True(parsed.HelpRequested);
        Assert.True(parsed.Has(CommonOptions.Quiet));
        Assert.False(parsed.Has(s_count));
        Assert.Throws<GetOptException>(() => s_table.Parse(["--nope", "-h"]));
    }
}
