using Qed.Cli.CommandLine;

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

    /// <summary>The command's options, operands and one-line description.</summary>
    public abstract OptionTable Options { get; }

    /// <summary>
    /// The one-line usage printed after a malformed call, in qemu-io's form and built from <see cref="Options"/>:
    /// <c>read [-qv] [-P pattern] off len -- reads a number of bytes at a specified offset</c>.
    /// </summary>
    public string Usage
    {
        get
        {
            var parts = new List<string> { Options.Command };
            string flags = string.Concat(Options.Options.Where(o => !o.TakesArgument).Select(o => o.Letter));
            if (flags.Length > 0)
            {
                parts.Add($"[-{flags}]");
            }
            parts.AddRange(Options.Options.Where(o => o.TakesArgument).Select(o => $"[{o.Usage}]"));
            if (Options.Operands.Length > 0)
            {
                parts.Add(Options.Operands);
            }
            return $"{string.Join(' ', parts)} -- {Options.Description}";
        }
    }

    /// <summary>True when the command needs write access.</summary>
    public abstract bool Writes { get; }

    /// <summary>Runs the command on the session's image; returns false when it failed (the failure is already printed).</summary>
    public abstract bool Run(IoSession session, IReadOnlyList<string> arguments);
}
