namespace Qed.Cli.CommandLine;

/// <summary>What <see cref="GetOpt"/> found: the options in command-line order and the remaining positional arguments.</summary>
internal sealed class ParsedArguments
{
    /// <summary>Creates the result.</summary>
    public ParsedArguments(IReadOnlyList<ParsedOption> options, IReadOnlyList<string> positionals)
    {
        Options = options;
        Positionals = positionals;
    }

    /// <summary>The options in the order they were given.</summary>
    public IReadOnlyList<ParsedOption> Options { get; }

    /// <summary>The arguments that are not options, in order.</summary>
    public IReadOnlyList<string> Positionals { get; }

    /// <summary>The one image file name a command takes; qemu-img's usage error when there is not exactly one.</summary>
    /// <exception cref="UsageException">No file name, or more than one.</exception>
    public string SingleImage() =>
        Positionals.Count == 1 ? Positionals[0] : throw new UsageException("Expecting one image file name");

    /// <summary>Checks an <c>--output</c> value as qemu-img does.</summary>
    /// <exception cref="CliException">Neither <c>human</c> nor <c>json</c>.</exception>
    public static void CheckOutputFormat(string output)
    {
        if (output is not ("human" or "json"))
        {
            throw new CliException("--output must be used with human or json as argument.");
        }
    }
}
