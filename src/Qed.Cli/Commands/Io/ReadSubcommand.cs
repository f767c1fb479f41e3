using System.Diagnostics;
using Qed.Cli.CommandLine;
using Qed.Cli.Output;

namespace Qed.Cli.Commands.Io;

/// <summary><c>read [-qv] [-P pattern] off len</c>: reads, optionally checks every byte against a pattern and dumps the data.</summary>
internal sealed class ReadSubcommand : IoSubcommand
{
    private static readonly CliOption<byte> s_pattern = new('P', null, "pattern", "check that every byte read is the pattern", IoArguments.ReadPattern);
    private static readonly CliFlag s_quiet = new('q', null, "print nothing");
    private static readonly CliFlag s_dump = new('v', null, "dump the data read");

    /// <inheritdoc />
    public override string Name => "read";

    /// <inheritdoc />
    public override int MinArguments => 2;

    /// <inheritdoc />
    public override int MaxArguments => -1;

    /// <inheritdoc />
    public override OptionTable Options { get; } = new("read", "off len", "reads a number of bytes at a specified offset", s_quiet, s_dump, s_pattern);

    /// <inheritdoc />
    public override bool Writes => false;

    /// <inheritdoc />
    public override bool Run(IoSession session, IReadOnlyList<string> arguments)
    {
        var parsed = session.ParseOptions(this, arguments);
        if (parsed is null)
        {
            return false;
        }
        byte? pattern = parsed.GetValue(s_pattern);
        bool quiet = parsed.Has(s_quiet);
        bool dump = parsed.Has(s_dump);
        if (parsed.Positionals.Count != 2)
        {
            session.PrintUsage(this);
            return false;
        }
        if (!session.TryParseRange(this, parsed.Positionals, out long offset, out int length))
        {
            return false;
        }

        byte[] buffer = new byte[length];
        var clock = Stopwatch.StartNew();
        try
        {
            session.Device.Read(buffer, offset);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            session.ReportFailure(Name, e);
            return false;
        }
        var elapsed = clock.Elapsed;

        bool ok = true;
        if (pattern is { } expected && buffer.AsSpan().IndexOfAnyExcept(expected) >= 0)
        {
            // qemu-io names the whole request, not the first differing byte.
            session.Out.WriteLine($"Pattern verification failed at offset {offset}, {length} bytes");
            ok = false;
        }
        if (quiet)
        {
            return ok;
        }
        if (dump)
        {
            HexDump.Write(session.Out, buffer, offset);
        }
        session.Report(Name, offset, length, elapsed);
        return ok;
    }
}
