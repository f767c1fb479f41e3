using Qed.Cli.CommandLine;

namespace Qed.Cli.Commands;

/// <summary>The image-size argument of <c>create</c>, with qemu-img's two error messages.</summary>
internal static class SizeArgument
{
    /// <summary>Parses a size such as <c>10M</c>.</summary>
    /// <exception cref="CliException">Not a size, or beyond the signed 64-bit range.</exception>
    public static long Parse(string text)
    {
        if (SizeParser.TryParse(text, out long size, out var error))
        {
            return size;
        }
        throw new CliException(error == SizeParseError.TooLarge
            ? $"Invalid image size specified. Must be between 0 and {long.MaxValue}."
            : "Invalid image size specified. You may use k, M, G, T, P or E suffixes for kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
    }
}
