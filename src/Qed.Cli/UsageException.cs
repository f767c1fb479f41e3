namespace Qed.Cli;

/// <summary>A malformed command line: reported like qemu-img, <c>qed: message</c> followed by a pointer to <c>qed --help</c>.</summary>
internal sealed class UsageException : CliException
{
    /// <summary>Creates the exception with its one-line message.</summary>
    public UsageException(string message) : base(message) { }
}
