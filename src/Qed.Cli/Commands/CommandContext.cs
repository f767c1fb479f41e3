namespace Qed.Cli.Commands;

/// <summary>Where a command writes, and the qemu-img-style ways it reports failures.</summary>
internal sealed class CommandContext
{
    /// <summary>Creates a context over the two writers.</summary>
    public CommandContext(TextWriter stdout, TextWriter stderr)
    {
        Out = stdout;
        Err = stderr;
    }

    /// <summary>Normal output.</summary>
    public TextWriter Out { get; }

    /// <summary>Error output.</summary>
    public TextWriter Err { get; }

    /// <summary>Prints <c>qed: message</c> on stderr and returns exit status 1.</summary>
    public int Error(string message)
    {
        Out.Flush();
        Err.WriteLine($"{Program.Name}: {message}");
        return 1;
    }

    private static readonly AsyncLocal<CommandContext?> s_current = new();

    /// <summary>The context of the command running on this flow, for helpers that have none passed in (the image opener's warnings).</summary>
    public static CommandContext? Current
    {
        get => s_current.Value;
        set => s_current.Value = value;
    }

    /// <summary>Prints a warning line (<c>qed: warning: ...</c>) on stderr.</summary>
    public void Warning(string message)
    {
        Out.Flush();
        Err.WriteLine($"{Program.Name}: warning: {message}");
    }

    /// <summary>Prints a command-line mistake and the pointer to the help, as qemu-img does, and returns 1.</summary>
    public int UsageError(string message)
    {
        Error(message);
        Err.WriteLine($"Try '{Program.Name} --help' for more information");
        return 1;
    }
}
