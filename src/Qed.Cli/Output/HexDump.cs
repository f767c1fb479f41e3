using System.Text;

namespace Qed.Cli.Output;

/// <summary>qemu-io's <c>read -v</c> dump: 16 bytes a line, <c>0000100a:  ab ab ab ab  ....</c>.</summary>
internal static class HexDump
{
    private const int BytesPerLine = 16;

    /// <summary>Writes <paramref name="data"/> as it lies at disk offset <paramref name="offset"/>.</summary>
    public static void Write(TextWriter writer, ReadOnlySpan<byte> data, long offset)
    {
        var line = new StringBuilder(80);
        for (int start = 0; start < data.Length; start += BytesPerLine)
        {
            var chunk = data.Slice(start, Math.Min(BytesPerLine, data.Length - start));
            line.Clear();
            line.Append((offset + start).ToString("x8", System.Globalization.CultureInfo.InvariantCulture)).Append(":  ");
            foreach (byte b in chunk)
            {
                line.Append(b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture)).Append(' ');
            }
            line.Append(' ');
            foreach (byte b in chunk)
            {
                line.Append(b is >= 0x20 and < 0x7f ? (char)b : '.');
            }
            writer.Write(line.Append('\n'));
        }
    }
}
