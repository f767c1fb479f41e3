using Qed.Cli.CommandLine;

namespace Qed.Cli.Commands.Io;

/// <summary><c>flush</c>: makes every completed write durable.</summary>
internal sealed class FlushSubcommand : IoSubcommand
{
    /// <inheritdoc />
    public override string Name => "flush";

    /// <inheritdoc />
    public override int MinArguments => 0;

    /// <inheritdoc />
    public override int MaxArguments => 0;

    /// <inheritdoc />
    public override OptionTable Options { get; } = new("flush", "", "flush all in-core file state to disk");

    /// <inheritdoc />
    public override bool Writes => false;

    /// <inheritdoc />
    public override bool Run(IoSession session, IReadOnlyList<string> arguments)
    {
        try
        {
            session.Device.Flush();
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            session.ReportFailure(Name, e);
            return false;
        }
    }
}
