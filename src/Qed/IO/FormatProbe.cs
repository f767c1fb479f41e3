using System.Text;
using Qed.Format;

namespace Qed.IO;

/// <summary>Recognises an image format from the first bytes of a file, as qemu-img's probing does for the formats we meet.</summary>
internal static class FormatProbe
{
    private static ReadOnlySpan<byte> Qcow2Magic => [(byte)'Q', (byte)'F', (byte)'I', 0xfb];

    private static ReadOnlySpan<byte> VdiSignature => [0x7f, 0x10, 0xda, 0xbe];

    /// <summary>Bytes the probe looks at.</summary>
    public const int ProbeLength = 512;

    /// <summary>Returns <c>qed</c>, <c>raw</c>, or the name of a format we recognise but cannot read (<c>qcow2</c>, <c>vmdk</c>, <c>vdi</c>, <c>vhdx</c>, <c>vpc</c>).</summary>
    public static string Probe(ReadOnlySpan<byte> head)
    {
        if (QedHeader.HasMagic(head))
        {
            return "qed";
        }
        if (head.StartsWith(Qcow2Magic))
        {
            return "qcow2";
        }
        if (head.StartsWith("KDMV"u8) || head.StartsWith("# Disk DescriptorFile"u8))
        {
            return "vmdk";
        }
        if (head.Length >= 68 && head.Slice(64, 4).SequenceEqual(VdiSignature))
        {
            return "vdi";
        }
        if (head.StartsWith("vhdxfile"u8))
        {
            return "vhdx";
        }
        if (head.StartsWith("conectix"u8))
        {
            return "vpc";
        }
        return "raw";
    }

    /// <summary>True for the formats this implementation reads and writes.</summary>
    public static bool IsSupported(string format) => format is "qed" or "raw";

    /// <summary>The one-line refusal for a format we recognise but do not read.</summary>
    public static string Unsupported(string path, string format) =>
        new StringBuilder().Append('\'').Append(path).Append("' is a ").Append(format)
            .Append(" image; qed reads only QED and raw images").ToString();
}
