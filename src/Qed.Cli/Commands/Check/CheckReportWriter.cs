using System.Globalization;
using System.Numerics;
using System.Text;
using System.Text.Json;
using Qed.Check;
using Qed.Cli.Output;

namespace Qed.Cli.Commands.Check;

/// <summary>Prints a <see cref="CheckResult"/> as <c>qemu-img check</c> does, in human form or as JSON with qemu-img's keys and key order.</summary>
internal static class CheckReportWriter
{
    /// <summary>qemu-img check's exit status for a result: 0 clean, 1 check errors, 2 corruptions, 3 only leaks.</summary>
    public static int ExitCode(CheckResult result) =>
        result.CheckErrors > 0 ? 1 : result.Corruptions > 0 ? 2 : result.Leaks > 0 ? 3 : 0;

    /// <summary>The human report: the problems found (or "No errors ..."), then the allocation statistics when there are any.</summary>
    public static void WriteHuman(TextWriter writer, CheckResult result)
    {
        var text = new StringBuilder();
        if (result.Corruptions == 0 && result.Leaks == 0 && result.CheckErrors == 0)
        {
            text.Append("No errors were found on the image.\n");
        }
        else
        {
            if (result.Corruptions != 0)
            {
                text.Append(CultureInfo.InvariantCulture, $"\n{result.Corruptions} errors were found on the image.\n");
                text.Append("Data may be corrupted, or further writes to the image may corrupt it.\n");
            }
            if (result.Leaks != 0)
            {
                text.Append(CultureInfo.InvariantCulture, $"\n{result.Leaks} leaked clusters were found on the image.\n");
                text.Append("This means waste of disk space, but no harm to data.\n");
            }
            if (result.CheckErrors != 0)
            {
                text.Append(CultureInfo.InvariantCulture, $"\n{result.CheckErrors} internal errors have occurred during the check.\n");
            }
        }
        if (result.TotalClusters != 0 && result.AllocatedClusters != 0)
        {
            // qemu-img computes the ratios in double precision and prints them with %0.2f.
            string allocated = FormatPercent(result.AllocatedClusters * 100.0 / result.TotalClusters);
            string fragmented = FormatPercent(result.FragmentedClusters * 100.0 / result.AllocatedClusters);
            string compressed = FormatPercent(result.CompressedClusters * 100.0 / result.AllocatedClusters);
            text.Append(CultureInfo.InvariantCulture,
                $"{result.AllocatedClusters}/{result.TotalClusters} = {allocated}% allocated, {fragmented}% fragmented, {compressed}% compressed clusters\n");
        }
        if (result.ImageEndOffset != 0)
        {
            text.Append(CultureInfo.InvariantCulture, $"Image end offset: {result.ImageEndOffset}\n");
        }
        writer.Write(text.ToString());
    }

    /// <summary>The block qemu-img prints after a repair that changed something, before it checks the image again.</summary>
    public static void WriteRepairSummary(TextWriter writer, CheckResult repair)
    {
        writer.Write(string.Create(CultureInfo.InvariantCulture,
            $"The following inconsistencies were found and repaired:\n\n    {repair.LeaksFixed} leaked clusters\n    {repair.CorruptionsFixed} corruptions\n\nDouble checking the fixed image now...\n"));
    }

    /// <summary>The JSON report: <c>filename</c>, <c>format</c> and <c>check-errors</c> always, every other counter only when it is not zero.</summary>
    /// <remarks>
    /// qemu-img prints a QDict, whose iteration order is that of its hash buckets; the keys below are written in that
    /// order (verified against qemu-img 7.2 output for QED and qcow2). <c>image-end-offset</c> and
    /// <c>compressed-clusters</c>, which come first in that order, are set only for qcow2.
    /// </remarks>
    public static void WriteJson(TextWriter writer, string fileName, string format, CheckResult result)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer, ImageInfoWriter.JsonOptions))
        {
            json.WriteStartObject();
            WriteIfSet(json, "image-end-offset", result.ImageEndOffset);
            WriteIfSet(json, "compressed-clusters", result.CompressedClusters);
            WriteIfSet(json, "total-clusters", result.TotalClusters);
            WriteIfSet(json, "corruptions", result.Corruptions);
            WriteIfSet(json, "corruptions-fixed", result.CorruptionsFixed);
            json.WriteNumber("check-errors", result.CheckErrors);
            WriteIfSet(json, "leaks", result.Leaks);
            WriteIfSet(json, "leaks-fixed", result.LeaksFixed);
            WriteIfSet(json, "allocated-clusters", result.AllocatedClusters);
            json.WriteString("filename", fileName);
            json.WriteString("format", format);
            WriteIfSet(json, "fragmented-clusters", result.FragmentedClusters);
            json.WriteEndObject();
        }
        writer.Write(Encoding.UTF8.GetString(buffer.WrittenSpan));
        writer.Write('\n');
    }

    private static void WriteIfSet(Utf8JsonWriter json, string key, long value)
    {
        if (value != 0)
        {
            json.WriteNumber(key, value);
        }
    }

    /// <summary>
    /// Formats a non-negative finite double with two decimals exactly as glibc's <c>%0.2f</c>: the exact binary value is
    /// rounded to nearest, ties to even (12.5/100 = 0.125 prints 0.12, where .NET's "F2" would print 0.13).
    /// </summary>
    public static string FormatPercent(double value)
    {
        if (!double.IsFinite(value) || value < 0)
        {
            return value.ToString("F2", CultureInfo.InvariantCulture);
        }
        long bits = BitConverter.DoubleToInt64Bits(value);
        int exponent = (int)((bits >> 52) & 0x7FF);
        long mantissa = bits & 0xF_FFFF_FFFF_FFFF;
        if (exponent == 0)
        {
            exponent = 1;
        }
        else
        {
            mantissa |= 1L << 52;
        }
        // value = mantissa * 2^(exponent - 1075); hundredths = round(value * 100).
        int shift = exponent - 1075;
        BigInteger scaled = new BigInteger(mantissa) * 100;
        BigInteger hundredths;
        if (shift >= 0)
        {
            hundredths = scaled << shift;
        }
        else
        {
            BigInteger denominator = BigInteger.One << -shift;
            hundredths = BigInteger.DivRem(scaled, denominator, out BigInteger remainder);
            int comparison = (remainder * 2).CompareTo(denominator);
            if (comparison > 0 || (comparison == 0 && !hundredths.IsEven))
            {
                hundredths++;
            }
        }
        BigInteger whole = BigInteger.DivRem(hundredths, 100, out BigInteger fraction);
        return string.Create(CultureInfo.InvariantCulture, $"{whole}.{(int)fraction:D2}");
    }
}
