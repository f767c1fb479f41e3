using Qed.Cli.CommandLine;

namespace Qed.Cli.Commands.Dd;

/// <summary>
/// The <c>key=value</c> operands of <c>qed dd</c>, read in order as qemu-img dd reads them: <c>bs</c>, <c>count</c>,
/// <c>skip</c>, <c>if</c>, <c>of</c>; the last of a repeated operand wins, and the first bad one stops the command.
/// </summary>
internal sealed class DdOperands
{
    /// <summary>qemu-img dd's block size when none is given.</summary>
    public const long DefaultBlockSize = 512;

    /// <summary>The largest block size qemu-img dd takes (C's INT_MAX).</summary>
    public const long MaxBlockSize = int.MaxValue;

    /// <summary>Bytes per block (<c>bs=</c>).</summary>
    public long BlockSize { get; private set; } = DefaultBlockSize;

    /// <summary>Blocks to copy (<c>count=</c>), or null for all up to the input's end.</summary>
    public long? Count { get; private set; }

    /// <summary>Blocks of the input to skip before copying (<c>skip=</c>).</summary>
    public long Skip { get; private set; }

    /// <summary>The input image (<c>if=</c>), or null when not given.</summary>
    public string? Input { get; private set; }

    /// <summary>The output image (<c>of=</c>), or null when not given.</summary>
    public string? Output { get; private set; }

    /// <summary>Reads the operands, then requires both files, with qemu-img dd's messages.</summary>
    /// <exception cref="CliException">An operand that is not <c>key=value</c>, an unknown key, a bad number, or a missing file.</exception>
    public static DdOperands Parse(IReadOnlyList<string> operands)
    {
        var result = new DdOperands();
        foreach (string operand in operands)
        {
            int equals = operand.IndexOf('=', StringComparison.Ordinal);
            string key = equals < 0 ? operand : operand[..equals];
            string value = equals < 0 ? "" : operand[(equals + 1)..];
            switch (equals < 0 ? null : key)
            {
                case "bs":
                    result.BlockSize = ParseBlockSize(value);
                    break;
                case "count":
                    result.Count = SizeParser.ParseArgument(value, "count");
                    break;
                case "skip":
                    result.Skip = SizeParser.ParseArgument(value, "skip");
                    break;
                case "if":
                    result.Input = value;
                    break;
                case "of":
                    result.Output = value;
                    break;
                default:
                    throw new CliException($"unrecognized operand {key}");
            }
        }
        if (result.Input is null || result.Output is null)
        {
            throw new CliException("Must specify both input and output files");
        }
        return result;
    }

    /// <summary>
    /// The range of an input of <paramref name="inputSize"/> bytes that the output holds, as GNU dd copies it:
    /// <c>[skip*bs, min((skip+count)*bs, size))</c>, empty when the skip reaches past the end (<paramref name="skippedPastEnd"/>).
    /// </summary>
    public (long Start, long Length) Range(long inputSize, out bool skippedPastEnd)
    {
        // Products that overflow lie past any input's end.
        long start = Skip > long.MaxValue / BlockSize ? long.MaxValue : Skip * BlockSize;
        skippedPastEnd = start > inputSize;
        if (skippedPastEnd)
        {
            return (inputSize, 0);
        }
        long available = inputSize - start;
        long wanted = Count is { } count && count <= long.MaxValue / BlockSize ? count * BlockSize : long.MaxValue;
        return (start, Math.Min(available, wanted));
    }

    private static long ParseBlockSize(string value)
    {
        if (!SizeParser.TryParse(value, out long size, out var error) && error == SizeParseError.Invalid)
        {
            // Text that is not a size at all gets cvtnum's wording.
            return SizeParser.ParseArgument(value, "bs");
        }
        if (error != SizeParseError.None || size < 1 || size > MaxBlockSize)
        {
            throw new CliException($"Invalid bs specified. Must be between 1 and {MaxBlockSize}.");
        }
        return size;
    }
}
