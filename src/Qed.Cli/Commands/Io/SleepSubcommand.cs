using Qed.Cli.CommandLine;

namespace Qed.Cli.Commands.Io;

/// <summary><c>sleep MS</c>: waits, with the image open (and locked), as qemu-io's <c>sleep</c> does; scripts use it to hold an image.</summary>
internal sealed class SleepSubcommand : IoSubcommand
{
    /// <inheritdoc />
    public override string Name => "sleep";

    /// <inheritdoc />
    public override int MinArguments => 1;

    /// <inheritdoc />
    public override int MaxArguments => 1;

    /// <inheritdoc />
    public override OptionTable Options { get; } = new("sleep", "", "waits for the given value in milliseconds");

    /// <inheritdoc />
    public override bool Writes => false;

    /// <inheritdoc />
    public override bool Run(IoSession session, IReadOnlyList<string> arguments)
    {
        int? milliseconds = IoArguments.ParseMilliseconds(arguments[0], session.Out);
        if (milliseconds is null)
        {
            return false;
        }
        // Whatever earlier commands printed is out before the wait (a script watching the output can tell when it began).
        session.Out.Flush();
        Thread.Sleep(milliseconds.Value);
        return true;
    }
}
