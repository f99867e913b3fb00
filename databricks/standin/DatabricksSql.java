package course.standin;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.SparkSessionExtensions;
import org.apache.spark.sql.catalyst.FunctionIdentifier;
import org.apache.spark.sql.catalyst.FunctionIdentifier$;
import org.apache.spark.sql.catalyst.expressions.CreateNamedStruct;
import org.apache.spark.sql.catalyst.expressions.ExpressionInfo;
import org.apache.spark.sql.catalyst.expressions.Literal;
import org.apache.spark.sql.catalyst.TableIdentifier;
import org.apache.spark.sql.catalyst.expressions.Expression;
import org.apache.spark.sql.catalyst.parser.ParseException;
import org.apache.spark.sql.catalyst.parser.ParserInterface;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;

import scala.Tuple3;
import scala.collection.immutable.Seq;
import scala.jdk.javaapi.CollectionConverters;
import scala.runtime.AbstractFunction1;
import scala.runtime.AbstractFunction2;
import scala.runtime.BoxedUnit;

/**
 * The Databricks SQL the course's Databricks stand-in needs and open-source Spark lacks
 * (`spark.sql.extensions=course.standin.DatabricksSql`):
 * <ul>
 * <li>Unity Catalog's `CREATE VOLUME [IF NOT EXISTS] catalog.schema.volume`: Spark has no volumes, so the statement
 * creates the folder /Volumes/catalog/schema/volume (under the system property course.volumes, default /Volumes),
 * which the stand-in's processes read and write as a workspace's do. Every other statement goes to Spark's parser.
 * <li>`current_version()`, whose `dbr_version` MLflow reads on serverless compute (before it ships a model to the
 * Python workers of `spark_udf`): the runtime named by the system property course.dbr_version.
 * </ul>
 */
public class DatabricksSql extends AbstractFunction1<SparkSessionExtensions, BoxedUnit> {
    @Override
    public BoxedUnit apply(SparkSessionExtensions extensions) {
        extensions.injectFunction(new Tuple3<>(
            FunctionIdentifier$.MODULE$.apply("current_version"),
            new ExpressionInfo(DatabricksSql.class.getName(), "current_version"),
            new AbstractFunction1<Seq<Expression>, Expression>() {
                @Override
                public Expression apply(Seq<Expression> arguments) {
                    String runtime = System.getProperty("course.dbr_version", "17.3.x-scala2.13");
                    List<Expression> fields = new ArrayList<>();
                    for (String[] field : new String[][] {{"client_version", null}, {"dbsql_version", null},
                                                          {"u_build_hash", "standin"}, {"r_build_hash", "standin"},
                                                          {"dbr_version", runtime}}) {
                        fields.add(Literal.create(field[0], DataTypes.StringType));
                        fields.add(Literal.create(field[1], DataTypes.StringType));
                    }
                    return new CreateNamedStruct(CollectionConverters.asScala(fields).toSeq());
                }
            }));
        extensions.injectParser(new AbstractFunction2<SparkSession, ParserInterface, ParserInterface>() {
            @Override
            public ParserInterface apply(SparkSession session, ParserInterface delegate) {
                return new Parser(delegate);
            }
        });
        return BoxedUnit.UNIT;
    }

    static final class Parser implements ParserInterface {
        private static final Pattern CREATE_VOLUME = Pattern.compile(
            "\\s*CREATE\\s+VOLUME\\s+(IF\\s+NOT\\s+EXISTS\\s+)?`?(\\w+)`?\\.`?(\\w+)`?\\.`?(\\w+)`?\\s*;?\\s*",
            Pattern.CASE_INSENSITIVE);
        private final ParserInterface delegate;

        Parser(ParserInterface delegate) {
            this.delegate = delegate;
        }

        @Override
        public LogicalPlan parsePlan(String sql) throws ParseException {
            Matcher volume = CREATE_VOLUME.matcher(sql);
            if (!volume.matches()) {
                return delegate.parsePlan(sql);
            }
            Path folder = Paths.get(System.getProperty("course.volumes", "/Volumes"),
                                    volume.group(2), volume.group(3), volume.group(4));
            if (Files.isDirectory(folder) && volume.group(1) == null) {
                return delegate.parsePlan("SELECT raise_error('[VOLUME_ALREADY_EXISTS] Volume " + volume.group(2)
                                          + "." + volume.group(3) + "." + volume.group(4) + " already exists')");
            }
            try {
                Files.createDirectories(folder);
            } catch (IOException error) {
                throw new IllegalStateException("The stand-in could not create " + folder + ": " + error, error);
            }
            return delegate.parsePlan("SELECT 'volume " + volume.group(4) + " created' AS status");
        }

        @Override
        public Expression parseExpression(String sql) throws ParseException {
            return delegate.parseExpression(sql);
        }

        @Override
        public TableIdentifier parseTableIdentifier(String sql) throws ParseException {
            return delegate.parseTableIdentifier(sql);
        }

        @Override
        public FunctionIdentifier parseFunctionIdentifier(String sql) throws ParseException {
            return delegate.parseFunctionIdentifier(sql);
        }

        @Override
        public Seq<String> parseMultipartIdentifier(String sql) throws ParseException {
            return delegate.parseMultipartIdentifier(sql);
        }

        @Override
        public LogicalPlan parseQuery(String sql) throws ParseException {
            return delegate.parseQuery(sql);
        }

        @Override
        public StructType parseRoutineParam(String sql) throws ParseException {
            return delegate.parseRoutineParam(sql);
        }

        @Override
        public StructType parseTableSchema(String sql) throws ParseException {
            return delegate.parseTableSchema(sql);
        }

        @Override
        public DataType parseDataType(String sql) throws ParseException {
            return delegate.parseDataType(sql);
        }
    }
}
