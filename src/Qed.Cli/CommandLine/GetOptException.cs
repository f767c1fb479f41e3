namespace Qed.Cli.CommandLine;

/// <summary>A command line that <see cref="GetOpt"/> could not parse; the caller words the message in its tool's style.</summary>
internal sealed class GetOptException : Exception
{
    /// <summary>Creates the exception.</summary>
    public GetOptException(GetOptError error, string argument, char? shortOption)
        : base($"{error}: {argument}")
    {
        Error = error;
        Argument = argument;
        ShortOption = shortOption;
    }

    /// <summary>What went wrong.</summary>
    public GetOptError Error { get; }

    /// <summary>The whole command-line element at fault, e.g. <c>-qz</c> or <c>--output</c> (qemu-img quotes this).</summary>
    public string Argument { get; }

    /// <summary>The offending short option letter, when the fault was in a short option (glibc's getopt quotes this).</summary>
    public char? ShortOption { get; }
}
