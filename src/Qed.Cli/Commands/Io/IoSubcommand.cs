namespace Qed.Cli.Commands.Io;

/// <summary>One qemu-io command that <c>qed io -c</c> understands.</summary>
internal abstract class IoSubcommand
{
    /// <summary>The command word (<c>read</c>).</summary>
    public abstract string Name { get; }

    /// <summary>Fewest arguments (options included, as qemu-io counts them).</summary>
    public abstract int MinArguments { get; }

    /// <summary>Most arguments, or -1 for no limit.</summary>
    public abstract int MaxArguments { get; }

    /// <summary>The one-line usage printed after a malformed call.</summary>
    public abstract string Usage { get; }

    /// <summary>True when the command needs write access.</summary>
    public abstract bool Writes { get; }

    /// <summary>Runs the command on the session's image; returns false when it failed (the failure is already printed).</summary>
    public abstract bool Run(IoSession session, IReadOnlyList<string> arguments);
}
