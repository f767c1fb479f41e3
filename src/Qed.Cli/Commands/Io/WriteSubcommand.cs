using System.Diagnostics;
using Qed.Cli.CommandLine;

namespace Qed.Cli.Commands.Io;

/// <summary><c>write [-qz] [-P pattern] off len</c>: writes a pattern (0xcd by default) or zeroes.</summary>
internal sealed class WriteSubcommand : IoSubcommand
{
    private static readonly CliOption<byte> s_pattern = new('P', null, "pattern", "the byte to write (default 0xcd)", IoArguments.ReadPattern);
    private static readonly CliFlag s_quiet = new('q', null, "print nothing");
    private static readonly CliFlag s_zeroes = new('z', null, "write zeroes");

    /// <inheritdoc />
    public override string Name => "write";

    /// <inheritdoc />
    public override int MinArguments => 2;

    /// <inheritdoc />
    public override int MaxArguments => -1;

    /// <inheritdoc />
    public override OptionTable Options { get; } = new("write", "off len", "writes a number of bytes at a specified offset", s_quiet, s_zeroes, s_pattern);

    /// <inheritdoc />
    public override bool Writes => true;

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
        bool zeroes = parsed.Has(s_zeroes);
        if (parsed.Positionals.Count != 2)
        {
            session.PrintUsage(this);
            return false;
        }
        if (zeroes && pattern is not null)
        {
            session.Out.WriteLine("Only one of -z, -P, and -s can be specified at the same time");
            return false;
        }
        if (!session.TryParseRange(this, parsed.Positionals, out long offset, out int length))
        {
            return false;
        }

        byte[]? buffer = null;
        if (!zeroes)
        {
            buffer = new byte[length];
            buffer.AsSpan().Fill(pattern ?? IoArguments.DefaultWritePattern);
        }
        var clock = Stopwatch.StartNew();
        try
        {
            if (buffer is null)
            {
                session.Device.WriteZeroes(offset, length);
            }
            else
            {
                session.Device.Write(buffer, offset);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            session.ReportFailure("write", e);
            return false;
        }
        var elapsed = clock.Elapsed;
        if (!quiet)
        {
            session.Report("wrote", offset, length, elapsed);
        }
        return true;
    }
}
