namespace Qed.Cli.CommandLine;

/// <summary>One option found on the command line.</summary>
/// <param name="Key">The short option letter (as a string) or the long option's key.</param>
/// <param name="Value">The option's value, or null for a flag.</param>
internal readonly record struct ParsedOption(string Key, string? Value);
