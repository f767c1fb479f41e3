namespace Qed.Cli.CommandLine;

/// <summary>Why a size string was refused by <see cref="SizeParser"/>.</summary>
internal enum SizeParseError
{
    /// <summary>The string parsed.</summary>
    None,
    /// <summary>Not a number, a bad suffix, trailing characters, or a fraction of a byte.</summary>
    Invalid,
    /// <summary>A well-formed number above <see cref="long.MaxValue"/>.</summary>
    TooLarge,
}
