using System.Globalization;
using System.Text.Json;
using Qed.Cli.Output;
using Qed.Formats;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Formats;

/// <summary>
/// The format-specific part of <c>info</c> (which qcow2 will fill): given the values qemu-img reports for a qcow2 chain,
/// our writer prints qemu-img's human and JSON text byte for byte.
/// </summary>
public class FormatSpecificInfoTests
{
    [Fact]
    public void Writer_PrintsFormatSpecificInformation_AsQemuImgDoes()
    {
        using var dir = new TempDirectory();
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "base.qcow2", "1M");
        Tools.QemuImg(dir.Path, "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2");
        string human = Tools.QemuImg(dir.Path, "info", "-U", "top.qcow2").StdOut;
        string json = Tools.QemuImg(dir.Path, "info", "-U", "--output=json", "top.qcow2").StdOut;

        using var document = JsonDocument.Parse(json);
        var root = document.RootElement;
        var details = new List<ImageDetail>();
        foreach (var property in root.GetProperty("format-specific").GetProperty("data").EnumerateObject())
        {
            details.Add(property.Value.ValueKind switch
            {
                JsonValueKind.True or JsonValueKind.False => new ImageDetail(property.Name, property.Value.GetBoolean() ? "true" : "false", ImageDetailKind.Boolean),
                JsonValueKind.Number => new ImageDetail(property.Name, property.Value.GetInt64().ToString(CultureInfo.InvariantCulture), ImageDetailKind.Number),
                _ => new ImageDetail(property.Name, property.Value.GetString()!, ImageDetailKind.Text),
            });
        }
        Assert.Contains(details, d => d is { Name: "lazy-refcounts", Value: "true", Kind: ImageDetailKind.Boolean });
        Assert.Contains(details, d => d is { Name: "refcount-bits", Kind: ImageDetailKind.Number });
        Assert.Contains(details, d => d is { Name: "compat", Kind: ImageDetailKind.Text });

        var info = new ImageInfo
        {
            FileName = root.GetProperty("filename").GetString()!,
            Format = root.GetProperty("format").GetString()!,
            VirtualSize = root.GetProperty("virtual-size").GetInt64(),
            ActualSize = root.GetProperty("actual-size").GetInt64(),
            ClusterSize = root.GetProperty("cluster-size").GetInt32(),
            DirtyFlag = root.GetProperty("dirty-flag").GetBoolean(),
            BackingFileName = root.GetProperty("backing-filename").GetString(),
            FullBackingFileName = root.GetProperty("full-backing-filename").GetString(),
            BackingFormat = root.GetProperty("backing-filename-format").GetString(),
            FormatSpecific = details,
        };
        var ours = new StringWriter { NewLine = "\n" };
        ImageInfoWriter.WriteHuman(ours, info);
        Assert.Equal(human, ours.ToString());
        ours = new StringWriter { NewLine = "\n" };
        ImageInfoWriter.WriteJson(ours, [info], asArray: false);
        Assert.Equal(json, ours.ToString());
    }
}
