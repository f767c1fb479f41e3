namespace Qed.Cli;

/// <summary>A failure the CLI reports as one line, <c>qed: message</c>, with exit status 1.</summary>
internal class CliException : Exception
{
    /// <summary>Creates the exception with its one-line message.</summary>
    public CliException(string message) : base(message) { }

    /// <summary>Creates the exception with its one-line message and the engine error behind it (whose lock hint, if any, is printed too).</summary>
    public CliException(string message, Exception? innerException) : base(message, innerException) { }
}
