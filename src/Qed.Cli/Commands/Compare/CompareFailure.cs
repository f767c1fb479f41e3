namespace Qed.Cli.Commands.Compare;

/// <summary>A failure of <c>qed compare</c> with qemu-img compare's exit status for it (2 and above: not an answer about the content).</summary>
internal sealed class CompareFailure : CliException
{
    /// <summary>An image could not be opened, or an option was refused after parsing (qemu-img's 2).</summary>
    public const int OpenFailed = 2;

    /// <summary>The allocation status of an image could not be read (qemu-img's 3).</summary>
    public const int StatusFailed = 3;

    /// <summary>An image could not be read (qemu-img's 4).</summary>
    public const int ReadFailed = 4;

    /// <summary>Creates the failure with its exit status and one-line message.</summary>
    public CompareFailure(int exitCode, string message, Exception? innerException = null) : base(message, innerException)
    {
        ExitCode = exitCode;
    }

    /// <summary>The exit status qemu-img compare gives this failure.</summary>
    public int ExitCode { get; }
}
